#!/usr/bin/env bash
# A multi-node ElasticCode test bed on one machine: each node is a Linux network namespace
# (ecnode1..N) with an address of its own on the bridge ecbr0, and the machine's PostgreSQL,
# Redis and RabbitMQ are reached from the nodes at 10.231.0.1 through socat forwarders.
# Root only. `cluster.sh --help` tells the commands; tests/cluster_bed.py drives it for pytest.
set -euo pipefail
shopt -s inherit_errexit # a failure inside $(...) ends the script too

readonly BRIDGE=ecbr0
readonly NET=10.231.0
readonly GATEWAY="$NET.1"
readonly NS_PREFIX=ecnode   # node I is the namespace ecnodeI, hostname nodeI, address 10.231.0.(10+I)
readonly VETH_PREFIX=ecveth # the root end of node I's veth pair, on the bridge
readonly PEER_PREFIX=ecpeer # the node's end until it is moved into the namespace and renamed eth0
readonly MAX_NODES=200
readonly STATE_DIR="${EC_CLUSTER_STATE:-/run/elasticcode-cluster}"
read -r -a PORTS <<<"${EC_CLUSTER_PORTS:-5432 6379 5672}"
# sh -c script run by `unshare --uts`: set the hostname of the new UTS namespace, then exec the command.
# shellcheck disable=SC2016 # expanded by that sh, not here
readonly SET_HOSTNAME='hostname "$1" && shift && exec "$@"'
readonly URL_VARS=(ELASTICCODE_DB ELASTICCODE_ADMIN_DB ELASTICCODE_SERVICE_DB ELASTICCODE_BROKER ELASTICCODE_BACKEND)
PROG=$(basename "$0")
REPO=$(cd "$(dirname "$0")/.." && pwd)
readonly PROG REPO

usage() {
  cat <<EOF
Usage: $PROG COMMAND [ARGS]

A multi-node ElasticCode test bed on this machine (root only). Node I is the network namespace
${NS_PREFIX}I: address $NET.(10+I)/24 on the bridge $BRIDGE, default route via $GATEWAY, hostname
nodeI for what runs in it. socat forwards $GATEWAY:PORT to 127.0.0.1:PORT for the ports
${PORTS[*]}, so the nodes reach the machine's PostgreSQL, Redis and RabbitMQ at $GATEWAY.

Commands:
  up N          create the bridge, nodes 1..N and the forwarders (idempotent; sets cut links up)
  agent [--cpus C] [--home DIR] [--log FILE] NODE [VAR=VALUE...] [-- AGENT_OPTIONS...]
                start \`python -m kernel_agent start --hostname nodeI --cpus C\` (C: 1) in node I,
                in the background, in a UTS namespace of its own whose hostname is nodeI; print
                its pid. Its environment: yours, plus VAR=VALUE; in ELASTICCODE_DB, _ADMIN_DB,
                _SERVICE_DB, _BROKER and _BACKEND the hosts 127.0.0.1 and localhost become
                $GATEWAY. Home: DIR (default
                $STATE_DIR/nodeI/home); output appended to FILE (default
                $STATE_DIR/nodeI/agent.log).
  exec NODE CMD [ARG...]
                run a command in node I (hostname nodeI), in the foreground
  kill NODE     SIGKILL every process in node I (its agent and its workers alike)
  crash NODE    cut, then kill: as at a power loss, no FIN or RST ever reaches the others
  cut NODE      set node I's link down: its traffic stops both ways, nothing is killed
  heal NODE     set it up again
  status        the nodes (link, processes) and the forwarders
  down          kill everything in the nodes; delete them, their links, the bridge, the
                forwarders and $STATE_DIR (safe to run at any time)
  check         exit 0 if namespaces can be made here; else print why in one line, exit 1
  help, -h, --help
                this text

NODE is I, nodeI or ${NS_PREFIX}I. Environment: EC_CLUSTER_STATE (state folder, default
/run/elasticcode-cluster), EC_CLUSTER_PORTS (forwarded ports, default "5432 6379 5672"),
PYTHON (the agent's interpreter; default $REPO/.venv/bin/python, else python3).

Example (a database and broker of the machine's own):
  $PROG up 3
  for i in 1 2 3; do
    $PROG agent \$i ELASTICCODE_DB=postgresql://postgres@127.0.0.1:5432/ec \\
      ELASTICCODE_BROKER=redis://127.0.0.1:6379/1 ELASTICCODE_BACKEND=redis://127.0.0.1:6379/1
  done
  $PROG kill 2
  $PROG down
EOF
}

die() {
  echo "$PROG: $*" >&2
  exit 1
}

need_root() {
  [[ $(id -u) -eq 0 ]] || die "needs root (network namespaces, veth pairs and a bridge): run it with sudo"
}

node_index() { # I from I, nodeI or ecnodeI
  local arg=${1:-}
  arg=${arg#"$NS_PREFIX"}
  arg=${arg#node}
  if ! [[ $arg =~ ^[1-9][0-9]*$ ]] || ((arg > MAX_NODES)); then
    die "bad node '${1:-}': give I, nodeI or ${NS_PREFIX}I with I in 1..$MAX_NODES"
  fi
  echo "$arg"
}

existing_node() { # I of a node that exists
  local i
  i=$(node_index "${1:-}")
  [[ -e /run/netns/$NS_PREFIX$i ]] || die "node node$i does not exist: run '$PROG up N' first"
  echo "$i"
}

node_namespaces() { # the namespaces this script made, whatever their number
  local path name
  for path in /run/netns/"$NS_PREFIX"*; do
    name=${path##*/}
    if [[ -e $path && $name =~ ^${NS_PREFIX}[0-9]+$ ]]; then
      echo "$name"
    fi
  done
}

python_bin() {
  if [[ -n ${PYTHON:-} ]]; then
    echo "$PYTHON"
  elif [[ -x $REPO/.venv/bin/python ]]; then
    echo "$REPO/.venv/bin/python"
  else
    echo python3
  fi
}

to_gateway() { # a URL whose host is 127.0.0.1 or localhost, with the host $GATEWAY
  sed -E "s#(//|@)(127\\.0\\.0\\.1|localhost)([:/?]|\$)#\\1$GATEWAY\\3#g" <<<"$1"
}

# -- probe -------------------------------------------------------------------------------------

probe() { # prints why namespaces cannot be made here, returns 1; silent and 0 when they can
  local tool out ns="ecprobe$$" veth="ecpa$$" peer="ecpb$$" bridge="ecpc$$" status=0
  if [[ $(id -u) -ne 0 ]]; then
    echo "needs root (network namespaces, veth pairs and a bridge)"
    return 1
  fi
  for tool in ip ss socat unshare setsid; do
    if ! command -v "$tool" >/dev/null; then
      echo "needs $tool on PATH: apt-get install iproute2 socat util-linux"
      return 1
    fi
  done
  if ! out=$(ip netns add "$ns" 2>&1); then
    echo "cannot create a network namespace (ip netns add: ${out//$'\n'/ })"
    return 1
  fi
  if ! out=$({ ip link add "$veth" type veth peer name "$peer" && ip link set "$peer" netns "$ns" &&
    ip link add "$bridge" type bridge && ip link set "$veth" master "$bridge"; } 2>&1); then
    echo "cannot make veth pairs or a bridge (${out//$'\n'/ })"
    status=1
  elif ! out=$(ip netns exec "$ns" unshare --uts -- sh -c 'hostname ecprobe && hostname' 2>&1) ||
    [[ $out != ecprobe ]]; then
    echo "cannot give a namespace a hostname of its own (unshare --uts: ${out//$'\n'/ })"
    status=1
  fi
  ip link del "$veth" 2>/dev/null || true
  ip link del "$bridge" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  return "$status"
}

cmd_check() {
  local why
  if why=$(probe); then
    echo "ok: network namespaces can be made here"
  else
    echo "$PROG: no cluster test bed here: $why" >&2
    exit 1
  fi
}

# -- up ----------------------------------------------------------------------------------------

make_node() {
  local i=$1 ns="$NS_PREFIX$1" veth="$VETH_PREFIX$1" peer="$PEER_PREFIX$1"
  [[ -e /run/netns/$ns ]] || ip netns add "$ns"
  if ! ip -n "$ns" link show eth0 >/dev/null 2>&1; then
    ip link del "$veth" 2>/dev/null || true # a pair left half made: both ends go
    ip link add "$veth" type veth peer name "$peer"
    ip link set "$peer" netns "$ns"
    ip -n "$ns" link set "$peer" name eth0
  fi
  ip link set "$veth" master "$BRIDGE"
  ip link set "$veth" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr replace "$NET.$((10 + i))/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" route replace default via "$GATEWAY"
}

alive() { # the process runs (a zombie waiting for its reaper does not)
  local stat
  stat=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ -n $stat && $stat != Z* ]]
}

forwarder_pid() { # the pid in the pidfile, if that process is still a running socat
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ && $(cat "/proc/$pid/comm" 2>/dev/null) == socat ]] && alive "$pid" || return 1
  echo "$pid"
}

listening() {
  [[ -n $(ss -ltnH src "$GATEWAY:$1" 2>/dev/null) ]]
}

forward() { # socat from $GATEWAY:PORT to 127.0.0.1:PORT, in a session of its own
  local port=$1 pidfile="$STATE_DIR/socat-$1.pid" log="$STATE_DIR/socat-$1.log" pid
  if forwarder_pid "$pidfile" >/dev/null; then
    return 0
  fi
  listening "$port" && die "$GATEWAY:$port is taken by a process this script did not start: run '$PROG down'"
  setsid socat -lf "$log" "TCP-LISTEN:$port,bind=$GATEWAY,reuseaddr,fork" "TCP:127.0.0.1:$port" \
    </dev/null >/dev/null 2>&1 &
  pid=$!
  echo "$pid" >"$pidfile"
  for _ in $(seq 50); do
    listening "$port" && return 0
    alive "$pid" || die "socat for port $port exited: $(tail -n 1 "$log" 2>/dev/null)"
    sleep 0.1
  done
  die "socat for port $port is not listening on $GATEWAY after 5 s (see $log)"
}

cmd_up() {
  local n=${1:-} i port
  if ! [[ $n =~ ^[1-9][0-9]*$ ]] || ((n > MAX_NODES)); then
    die "up: give the number of nodes, 1..$MAX_NODES"
  fi
  local why
  why=$(probe) || die "no cluster test bed here: $why"
  mkdir -p "$STATE_DIR"
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  ip addr replace "$GATEWAY/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  for ((i = 1; i <= n; i++)); do
    make_node "$i"
  done
  for port in "${PORTS[@]}"; do
    forward "$port"
  done
  echo "up: nodes node1..node$n at $NET.11..$NET.$((10 + n)), services at $GATEWAY:{${PORTS[*]}}"
}

# -- agents and commands in a node -------------------------------------------------------------

in_node() { # in_node I CMD...: CMD in node I, in a UTS namespace whose hostname is nodeI
  local i=$1
  shift
  ip netns exec "$NS_PREFIX$i" unshare --uts -- sh -c "$SET_HOSTNAME" sh "node$i" "$@"
}

cmd_agent() {
  local cpus=1 home="" log="" i var
  local -a envs=() opts=()
  while [[ $# -gt 0 ]]; do
    case $1 in
    --cpus | --home | --log)
      [[ $# -ge 2 ]] || die "agent: $1 needs a value"
      case $1 in
      --cpus) cpus=$2 ;;
      --home) home=$2 ;;
      --log) log=$2 ;;
      esac
      shift 2
      ;;
    -*) die "agent: unknown option $1 (see $PROG --help)" ;;
    *) break ;;
    esac
  done
  [[ $cpus =~ ^[1-9][0-9]*$ ]] || die "agent: --cpus takes a positive number"
  i=$(existing_node "${1:-}")
  shift
  home=$(realpath -m "${home:-$STATE_DIR/node$i/home}")
  log=$(realpath -m "${log:-$STATE_DIR/node$i/agent.log}")
  for var in "${URL_VARS[@]}"; do
    if [[ -n ${!var:-} ]]; then
      envs+=("$var=$(to_gateway "${!var}")")
    fi
  done
  while [[ $# -gt 0 ]]; do
    case $1 in
    --)
      shift
      opts=("$@")
      break
      ;;
    [A-Za-z_]*=*)
      var=${1%%=*}
      if [[ " ${URL_VARS[*]} " == *" $var "* ]]; then
        envs+=("$var=$(to_gateway "${1#*=}")")
      else
        envs+=("$1")
      fi
      shift
      ;;
    *) die "agent: '$1' is not VAR=VALUE (options for the agent go after --)" ;;
    esac
  done
  mkdir -p "$home" "$(dirname "$log")"
  setsid ip netns exec "$NS_PREFIX$i" unshare --uts -- sh -c "$SET_HOSTNAME" sh "node$i" \
    env "${envs[@]}" "ELASTICCODE_HOME=$home" "$(python_bin)" -m kernel_agent start --hostname "node$i" \
    --cpus "$cpus" "${opts[@]}" </dev/null >>"$log" 2>&1 &
  echo "$!"
}

cmd_exec() {
  local i
  i=$(existing_node "${1:-}")
  shift
  [[ $# -gt 0 ]] || die "exec: give a command to run in node$i"
  in_node "$i" "$@"
}

kill_namespace() { # SIGKILL until no process is left in the namespace; prints how many were killed
  local ns=$1 killed=0
  local -a pids=()
  for _ in $(seq 100); do
    mapfile -t pids < <(ip netns pids "$ns" 2>/dev/null)
    if ((${#pids[@]} == 0)); then
      echo "$killed"
      return 0
    fi
    kill -KILL "${pids[@]}" 2>/dev/null || true
    killed=$((killed + ${#pids[@]}))
    sleep 0.05
  done
  die "processes of $ns survive SIGKILL: ${pids[*]}"
}

cmd_kill() {
  local i killed
  i=$(existing_node "${1:-}")
  killed=$(kill_namespace "$NS_PREFIX$i")
  echo "node$i: killed $killed processes"
}

cmd_link() { # cmd_link down|up NODE
  local state=$1 i
  i=$(existing_node "${2:-}")
  ip link set "$VETH_PREFIX$i" "$state"
  echo "node$i: link $state"
}

cmd_crash() {
  cmd_link down "${1:-}"
  cmd_kill "${1:-}"
}

cmd_status() {
  local ns i state count port pid
  for ns in $(node_namespaces); do
    i=${ns#"$NS_PREFIX"}
    state=$(cat "/sys/class/net/$VETH_PREFIX$i/operstate" 2>/dev/null || echo missing)
    count=$(ip netns pids "$ns" 2>/dev/null | wc -l)
    echo "node$i: namespace $ns, address $NET.$((10 + i)), link $state, $count processes"
  done
  for port in "${PORTS[@]}"; do
    if pid=$(forwarder_pid "$STATE_DIR/socat-$port.pid"); then
      echo "forwarder $GATEWAY:$port -> 127.0.0.1:$port: pid $pid"
    else
      echo "forwarder $GATEWAY:$port: not running"
    fi
  done
}

# -- down --------------------------------------------------------------------------------------

stop_socat() { # a socat this script started (the leader of its own session) and its connections
  local pid=$1
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == socat ]] && alive "$pid" || return 0
  if [[ $(ps -o pgid= -p "$pid" | tr -d ' ') == "$pid" ]]; then
    kill -TERM -- "-$pid" 2>/dev/null || true
  else
    kill -TERM "$pid" 2>/dev/null || true
  fi
  for _ in $(seq 20); do
    alive "$pid" || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

cmd_down() {
  local ns link pid pidfile
  need_root
  for ns in $(node_namespaces); do
    kill_namespace "$ns" >/dev/null || true
  done
  for pidfile in "$STATE_DIR"/socat-*.pid; do
    if pid=$(forwarder_pid "$pidfile"); then
      stop_socat "$pid"
    fi
  done
  # Forwarders whose pidfile is gone: a socat listening on the gateway address is one of ours.
  for pid in $(ss -ltnpH src "$GATEWAY" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do
    stop_socat "$pid"
  done
  for ns in $(node_namespaces); do
    ip netns del "$ns" 2>/dev/null || true
  done
  for link in $(ip -o link show type veth 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    if [[ $link =~ ^($VETH_PREFIX|$PEER_PREFIX)[0-9]+$ ]]; then
      ip link del "$link" 2>/dev/null || true
    fi
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  rm -rf "$STATE_DIR"
  echo "down: no nodes, links, bridge or forwarders left"
}

main() {
  local command=${1:-}
  if [[ $# -gt 0 ]]; then
    shift
  fi
  case $command in
  up) need_root && cmd_up "$@" ;;
  agent) need_root && cmd_agent "$@" ;;
  exec) need_root && cmd_exec "$@" ;;
  kill) need_root && cmd_kill "$@" ;;
  crash) need_root && cmd_crash "$@" ;;
  cut) need_root && cmd_link down "$@" ;;
  heal) need_root && cmd_link up "$@" ;;
  status) need_root && cmd_status ;;
  down) cmd_down ;;
  check) cmd_check ;;
  help | -h | --help) usage ;;
  "")
    usage >&2
    exit 2
    ;;
  *)
    echo "$PROG: unknown command '$command'" >&2
    usage >&2
    exit 2
    ;;
  esac
}

main "$@"
