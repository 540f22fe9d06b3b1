"""Plain HTTP to the world's ALBs, as a user's curl or urllib sends it after `source
<dir>/env`: to the proxy the env names for http:// URLs, which forwards it to the ALB's
HTTP listener (port 80), whose answer is the redirect to HTTPS."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

from sandbox_support import World, wait_for


class NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 301 itself is the answer under test


def test_plain_http_reaches_the_worlds_front_end_through_the_proxy_its_env_names(
    world: World,
) -> None:
    env = world.env
    assert env["http_proxy"] == env["HTTP_PROXY"] == world.info["endpoints"]["proxy"]
    # A name the world's DNS resolves to its front end, as an alias to an ALB does.
    route53 = world.client("route53")
    root = route53.get_hosted_zone(Id=world.root_zone_id)["HostedZone"]["Name"]
    host = f"plain-http.{root.rstrip('.')}"
    address = world.info["endpoints"]["alb"]
    record = {"Name": host, "Type": "A", "TTL": 60, "ResourceRecords": [{"Value": address}]}
    route53.change_resource_record_sets(
        HostedZoneId=world.root_zone_id,
        ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": record}]},
    )
    # What urllib makes of the env: http:// through the proxy (127.0.0.1 would go direct).
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({"http": env["http_proxy"]}), NoRedirects
    )

    def status(url: str) -> tuple[int, str]:
        try:
            with opener.open(url, timeout=10) as answer:
                return answer.status, ""
        except urllib.error.HTTPError as answer:
            return answer.code, answer.headers.get("Location", "")

    def answered() -> tuple[int, str] | None:
        found = status(f"http://{host}/a?b=c")
        return None if found[0] == 502 else found  # 502: the change is not INSYNC yet

    redirected = wait_for(answered, timeout=30, what="the record to resolve")
    # The front end's HTTP port: the listener's redirect to HTTPS.
    assert redirected == (301, f"https://{host}/a?b=c")
    assert status("http://nowhere.example.org/")[0] == 502  # as CONNECT refuses it
