"""Provision a layout through the Pulsar admin REST API (through the proxy, like a user)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

from chaoslab import http
from chaoslab.workload.layout import Layout


class AdminError(RuntimeError):
    pass


class TransientAdminError(AdminError):
    pass


class PulsarAdmin:
    def __init__(self, url: str, cluster: str = "lab", timeout: float = 30):
        self.url = url.rstrip("/")
        self.cluster = cluster
        self.timeout = timeout

    @retry(retry=retry_if_exception_type(TransientAdminError), stop=stop_after_delay(120),
           wait=wait_exponential(multiplier=0.5, max=10), reraise=True)
    def request(self, method: str, path: str, body=None, ok_codes=(200, 204)):
        resp = http.request(method, f"{self.url}{path}", body=body, timeout=self.timeout)
        if resp.status in ok_codes:
            return resp.json() if resp.text.strip() else None
        if resp.status == 0 or resp.status >= 500 or resp.status in (307, 429):
            raise TransientAdminError(f"{method} {path}: {resp.describe()}")
        raise AdminError(f"{method} {path}: {resp.describe()}")

    def ensure_tenant(self, tenant: str) -> None:
        self.request("PUT", f"/admin/v2/tenants/{tenant}",
                     {"allowedClusters": [self.cluster], "adminRoles": []}, ok_codes=(204, 409))

    def ensure_namespace(self, namespace: str) -> None:
        self.request("PUT", f"/admin/v2/namespaces/{namespace}", None, ok_codes=(204, 409))

    def ensure_partitioned_topic(self, tenant: str, namespace: str, topic: str, partitions: int) -> None:
        self.request("PUT", f"/admin/v2/persistent/{tenant}/{namespace}/{topic}/partitions",
                     partitions, ok_codes=(204, 409))

    def provision(self, layout: Layout, workers: int = 8) -> None:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(self.ensure_tenant, layout.tenants))
            list(pool.map(self.ensure_namespace, layout.namespaces))
            list(pool.map(lambda t: self.ensure_partitioned_topic(t.tenant, t.namespace, t.name, t.partitions),
                          [t for t in layout.topics if t.partitions]))

    def delete_tenants(self, layout: Layout) -> None:
        for ns in layout.namespaces:
            self.request("DELETE", f"/admin/v2/namespaces/{ns}?force=true", ok_codes=(204, 404))
        for tenant in layout.tenants:
            self.request("DELETE", f"/admin/v2/tenants/{tenant}?force=true", ok_codes=(204, 404))
