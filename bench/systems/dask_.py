"""Dask distributed: a LocalCluster of `workers` worker processes with one thread each; P3's
single-process run pins its tasks to one of them."""

from __future__ import annotations

from . import System as Base

TIMEOUT = 600


class System(Base):
    def start(self, workers: int) -> dict:
        import benchfuncs
        import dask
        import distributed
        from dask.distributed import Client, LocalCluster

        self.funcs = benchfuncs
        dask.config.set({"temporary-directory": str(self.work_dir / "dask")})
        self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                                    local_directory=str(self.work_dir / "dask"))
        self.client = Client(self.cluster)
        self.client.wait_for_workers(workers, timeout=120)
        self.first = sorted(self.client.scheduler_info()["workers"])[0]
        self.client.submit(benchfuncs.echo, 0, pure=False).result(timeout=120)
        return {"version": distributed.__version__, "cluster": f"LocalCluster(n_workers={workers}, threads_per_worker=1, processes=True)"}

    def roundtrip(self) -> None:
        self.client.submit(self.funcs.echo, 1, pure=False).result(timeout=TIMEOUT)

    def burst(self, n: int) -> None:
        self.client.gather(self.client.map(self.funcs.echo, range(n), pure=False))

    def cpu(self, n_calls: int, procs: int, work: int) -> None:
        pin = {"workers": [self.first], "allow_other_workers": False} if procs == 1 else {}
        self.client.gather(self.client.map(self.funcs.spin, [work] * n_calls, pure=False, **pin))

    def stop(self) -> None:
        for name in ("client", "cluster"):
            thing = getattr(self, name, None)
            if thing is not None:
                try:
                    thing.close()
                except Exception:  # noqa: BLE001 - the driver kills what is left
                    pass
