"""ipyparallel: a controller and `workers` engines (ipp.Cluster, local launchers), a load-balanced view;
P3's single-process run uses a view on one engine."""

from __future__ import annotations

import os

from . import System as Base

TIMEOUT = 600


class System(Base):
    def start(self, workers: int) -> dict:
        os.environ["IPYTHONDIR"] = str(self.work_dir / "ipython")  # never the user's ~/.ipython
        import benchfuncs
        import ipyparallel as ipp

        self.funcs = benchfuncs
        self.cluster = ipp.Cluster(n=workers, profile_dir=str(self.work_dir / "ipython" / "profile_bench"), log_level=30)
        self.rc = self.cluster.start_and_connect_sync(activate=False)
        self.rc.wait_for_engines(workers, timeout=120)
        self.view = self.rc.load_balanced_view()
        self.one = self.rc.load_balanced_view(targets=[self.rc.ids[0]])
        self.view.apply_sync(benchfuncs.echo, 0)
        return {"version": ipp.__version__, "cluster": f"ipp.Cluster(n={workers}), load-balanced view"}

    def roundtrip(self) -> None:
        self.view.apply_async(self.funcs.echo, 1).get(timeout=TIMEOUT)

    def _gather(self, results) -> None:
        for result in results:
            result.get(timeout=TIMEOUT)

    def burst(self, n: int) -> None:
        self._gather([self.view.apply_async(self.funcs.echo, i) for i in range(n)])

    def cpu(self, n_calls: int, procs: int, work: int) -> None:
        view = self.one if procs == 1 else self.view
        self._gather([view.apply_async(self.funcs.spin, work) for _ in range(n_calls)])

    def stop(self) -> None:
        rc = getattr(self, "rc", None)
        if rc is not None:
            try:
                rc.close()
            except Exception:  # noqa: BLE001
                pass
        cluster = getattr(self, "cluster", None)
        if cluster is not None:
            try:
                cluster.stop_cluster_sync()
            except Exception:  # noqa: BLE001 - the driver kills what is left
                pass
