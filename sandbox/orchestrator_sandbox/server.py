"""The sandbox world's process: `python -m orchestrator_sandbox.server --dir DIR`.

Serves, on free ports of 127.0.0.1 only (any user can bind them, and macOS has no other
loopback address), a moto server (AWS), a DNS server, per EKS cluster a Kubernetes API
emulator, the ALBs' front end (HTTPS and HTTP) and the CONNECT proxy that reaches it;
seeds the estate, runs the simulators (ACM; per cluster, Deployments and the load
balancer controller; a neighbour cluster's controller in the primary cluster's VPC), writes
`env`, `kubeconfig` (a context per cluster), a deployment
config per cluster and finally `world.json` (its `warnings`: what `up` prints on the
terminal), then runs until SIGTERM. Every HTTP request the AWS and Kubernetes servers
receive goes to `cloudtrail.jsonl` and `kube-audit.jsonl`, and every wait the world imposes
(a Route 53 change propagating, a certificate being issued, an ALB provisioning, ...) to
`world-events.jsonl` (events.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator_sandbox import options
from orchestrator_sandbox.seed import PRODUCTION, STAGING, ClusterEstate

if TYPE_CHECKING:
    from kube_api_emulator import ClusterAccess
    from orchestrator_sandbox.kubeaudit import KubeAuditLog
    from orchestrator_sandbox.kubetoken import ClusterTokens

ACCOUNT = "123456789012"
REGION = "us-west-2"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")
# What clients of the world reach directly, not through its proxy: its AWS endpoint and
# Kubernetes APIs (botocore and the kubernetes client read NO_PROXY).
NO_PROXY = "127.0.0.1,localhost"


@dataclass(frozen=True)
class ClusterSite:
    """One EKS cluster of the world, and where what it is made of is published.

    The primary cluster (`key` None) is the one world.json's top-level `seeded` keys, the
    `kubernetes` endpoint, `config.yaml` and the kubeconfig's current context are about;
    another is published under its key (`seeded[key]`, `kubernetes_<key>`, `config-<key>.yaml`),
    and its config names its context."""

    estate: ClusterEstate
    context: str
    key: str | None = None

    @property
    def endpoint(self) -> str:
        return "kubernetes" if self.key is None else f"kubernetes_{self.key}"

    @property
    def config_name(self) -> str:
        return "config.yaml" if self.key is None else f"config-{self.key}.yaml"

    @property
    def config_context(self) -> str | None:
        return None if self.key is None else self.context


# The primary cluster first: its context is the kubeconfig's current one.
SITES = (ClusterSite(PRODUCTION, "sandbox"), ClusterSite(STAGING, "staging", key="staging"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="orchestrator_sandbox.server")
    parser.add_argument("--dir", required=True)
    for setting in options.SETTINGS:
        parser.add_argument(setting.flag, dest=setting.name, type=float, default=setting.default)
    parser.add_argument("--second-team", action="store_true")
    parser.add_argument("--leftovers", action="store_true")
    parser.add_argument("--adopted-controller")
    parser.add_argument("--setup-script", action="store_true")
    # Recorded only: the settings given already apply them (options.profile_settings).
    parser.add_argument("--profile", choices=sorted(options.PROFILES))
    parser.add_argument("--time-scale", type=float, default=1.0)
    args = parser.parse_args(argv)
    directory = Path(args.dir).resolve()

    # In-process clients use the same fake credentials the env file hands out.
    os.environ.update(CREDENTIALS)
    os.environ.pop("AWS_PROFILE", None)
    # The world's own clients talk to it on 127.0.0.1, never through the user's proxy.
    for name in PROXY_VARIABLES:
        os.environ.pop(name, None)
        os.environ.pop(name.lower(), None)
    os.environ["AWS_DEFAULT_REGION"] = REGION
    # moto loads thousands of AMIs on EC2's first call; the world needs none.
    os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    settings = {setting.name: getattr(args, setting.name) for setting in options.SETTINGS}
    world = World(
        directory,
        settings,
        second_team=args.second_team,
        leftovers=args.leftovers,
        adopted_controller=args.adopted_controller,
        setup_script=args.setup_script,
        profile=args.profile,
        time_scale=args.time_scale,
    )
    # Until the world is ready, SIGTERM ends the process at once: an interrupted `up` stops
    # a half-started world, and there is nothing to wait for.
    world.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"sandbox world up: {json.dumps(world.endpoints)}", flush=True)
    stop.wait()
    # The world lives in memory only: nothing to save, so leave without joining threads.
    sys.stdout.flush()
    os._exit(0)


class World:
    def __init__(
        self,
        directory: Path,
        settings: dict[str, float],
        second_team: bool = False,
        profile: str | None = None,
        time_scale: float = 1.0,
        leftovers: bool = False,
        adopted_controller: str | None = None,
        setup_script: bool = False,
    ) -> None:
        self.directory = directory
        self.settings = {**options.defaults(), **settings}
        self.second_team = second_team
        self.leftovers = leftovers
        self.adopted_controller = adopted_controller
        self.setup_script = setup_script
        self._stores: dict[ClusterSite, Any] = {}  # each cluster's object store, for seeding
        self.profile = profile
        self.time_scale = time_scale
        self.endpoints: dict[str, str] = {}
        self.warnings: list[str] = []  # one line each, printed by `up` on the terminal
        self._stoppers: list[Any] = []

    def start(self) -> None:
        from kube_api_emulator import write_kubeconfig_contexts
        from orchestrator_sandbox import events
        from orchestrator_sandbox.acm import (
            AcmSimulator,
            disable_moto_auto_issue,
            refuse_regions_not_enabled,
            use_distinct_validation_records,
            use_key_algorithms,
        )
        from orchestrator_sandbox.dnsserver import DnsServer
        from orchestrator_sandbox.dnsview import DnsView
        from orchestrator_sandbox.egress import ConnectProxy, front_end_route
        from orchestrator_sandbox.elbphysics import make_elb_physical
        from orchestrator_sandbox.iamtags import make_iam_tags_strict
        from orchestrator_sandbox.kubeaudit import KubeAuditLog
        from orchestrator_sandbox.kubetoken import ClusterTokens
        from orchestrator_sandbox.motodispatch import remember_constant_answers
        from orchestrator_sandbox.network import make_ec2_strict
        from orchestrator_sandbox.paging import page_lists
        from orchestrator_sandbox.route53 import make_route53_strict, published_zones
        from orchestrator_sandbox.seed import (
            deployment_config,
            seed,
            seed_adopted_controller_role,
            seed_leftover_role,
            use_distinct_cluster_identities,
        )

        events.record_to(self.directory / events.NAME)
        disable_moto_auto_issue()
        use_distinct_validation_records()
        use_key_algorithms()
        refuse_regions_not_enabled()
        make_route53_strict()  # no propagation delay while seeding: the estate is old
        make_ec2_strict()
        make_iam_tags_strict()
        make_elb_physical(
            sg_drain_seconds=self.settings["drain_delay"],
            target_health_seconds=self.settings["target_delay"],
        )
        use_distinct_cluster_identities()
        remember_constant_answers()
        # Last: it pages what the patches above answer (the world's own clients read whole).
        page_lists(int(self.settings["page_size"]))
        aws_url = self._start_moto()
        clients = {
            name: self._client(name, aws_url)
            for name in ("ec2", "eks", "iam", "route53", "acm", "elbv2")
        }
        seeded = dict(
            zip(SITES, seed(clients, REGION, tuple(s.estate for s in SITES)), strict=True)
        )
        make_route53_strict(
            dns_delay=self.settings["dns_delay"],
            rate=self.settings["route53_rate"],
            alias_delay=self.settings["alias_delay"],
        )
        neighbour = self._start_neighbour(clients, seeded[SITES[0]])
        if self.adopted_controller:
            primary = seeded[SITES[0]]
            primary["adopted_role_arn"] = seed_adopted_controller_role(
                clients["iam"], primary["cluster_arn"], primary["oidc_issuer"]
            )
        if self.leftovers:
            primary = seeded[SITES[0]]
            primary["leftover_role_arn"] = seed_leftover_role(
                clients["iam"], primary["cluster_arn"], primary["oidc_issuer"]
            )

        alb = self._start_alb_endpoint(clients)
        view = DnsView(
            clients["route53"],
            alias_address=alb.alias_address,
            served=lambda: published_zones(ACCOUNT),
        )
        dns = DnsServer(view)
        dns.start()
        self._stoppers.append(dns.stop)
        proxy = ConnectProxy(front_end_route(view, alb))
        proxy.start()
        self._stoppers.append(proxy.stop)
        acm = AcmSimulator(
            view,
            {REGION: clients["acm"]},
            ACCOUNT,
            self.settings["acm_delay"],
            make_client=lambda region: self._client("acm", aws_url, region),
        )
        acm.start()
        self._stoppers.append(acm.stop)

        audit = KubeAuditLog(self.directory / "kube-audit.jsonl")
        tokens = ClusterTokens.in_directory(self.directory, ttl=self.settings["token_ttl"])
        access = {
            site: self._start_cluster(site, clients, audit, tokens, seeded[site]) for site in SITES
        }
        write_kubeconfig_contexts(
            self.directory / "kubeconfig",
            {site.context: cluster for site, cluster in access.items()},
            current=SITES[0].context,
        )
        self.endpoints = {
            "aws": aws_url,
            "dns": f"127.0.0.1:{dns.port}",
            **{site.endpoint: cluster.url for site, cluster in access.items()},
            "alb": alb.address,
            "alb_https": f"{alb.address}:{alb.https_port}",
            "alb_http": f"{alb.address}:{alb.http_port}",
            "proxy": proxy.url,
        }
        for site, facts in seeded.items():
            config = deployment_config(facts, site.estate.subdomain, site.config_context)
            self._write(site.config_name, config)
        if self.setup_script:
            self._run_setup_script(clients, seeded[SITES[0]])
        self._write("env", self._env())
        self._write(
            "world.json",
            json.dumps(
                {
                    "pid": os.getpid(),
                    # A copy of this directory is not where this world runs.
                    "directory": str(self.directory),
                    "endpoints": self.endpoints,
                    "seeded": _published(seeded),
                    "neighbour": neighbour,
                    "account": ACCOUNT,
                    "settings": self.settings,
                    "profile": self.profile,
                    "time_scale": self.time_scale,
                    "second_team": self.second_team,
                    "leftovers": self.leftovers,
                    "adopted_controller": self.adopted_controller,
                    "setup_script": self.setup_script,
                    "warnings": self.warnings,
                },
                indent=2,
            ),
        )

    def stop(self) -> None:
        for stopper in reversed(self._stoppers):
            stopper()

    def _run_setup_script(self, clients: dict[str, Any], primary: dict[str, Any]) -> None:
        """Play the old setup script on the primary cluster, from its config, once the world
        runs (the script waits on ACM and the controller); world.json publishes what it
        made as `seeded.setup_script`."""
        from orchestrator_sandbox.setupscript import run_setup_script

        site = SITES[0]
        config = (self.directory / site.config_name).read_text()
        made = run_setup_script(clients, self._stores[site], primary, config, self.directory)
        primary["setup_script"] = made.published()

    def _start_moto(self) -> str:
        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        from orchestrator_sandbox.cloudtrail import CloudTrail

        app = CloudTrail(
            DomainDispatcherApplication(create_backend_app), self.directory / "cloudtrail.jsonl"
        )
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True, name="moto").start()
        self._stoppers.append(server.shutdown)
        return f"http://127.0.0.1:{server.server_port}"

    def _start_cluster(
        self,
        site: ClusterSite,
        clients: dict[str, Any],
        audit: KubeAuditLog,
        tokens: ClusterTokens,
        facts: dict[str, Any],
    ) -> ClusterAccess:
        """One cluster's API server, as EKS serves it (HTTPS under a CA of the cluster's own,
        short-lived tokens from an exec plugin, its URL and CA published by EKS), seeded,
        and what runs in it: Deployments roll out and the load balancer controller acts, on
        its own objects and for its own EKS name."""
        from kube_api_emulator import ClusterAccess, ClusterTls, KubeApiServer
        from orchestrator_sandbox.albcontroller import AlbControllerSimulator
        from orchestrator_sandbox.deployments import DeploymentRollouts
        from orchestrator_sandbox.events import record_crd_establishment
        from orchestrator_sandbox.kubeseed import (
            seed_adopted_controller,
            seed_cluster,
            seed_data_team,
            seed_leftovers,
        )
        from orchestrator_sandbox.kubetoken import exec_args
        from orchestrator_sandbox.seed import publish_cluster_endpoint
        from orchestrator_sandbox.webhookserver import ControllerWebhooks

        name = site.estate.name
        tls = ClusterTls.issue()
        kube = KubeApiServer(
            audit=audit.recorder(name),
            tls=tls.server_context(),
            authenticator=tokens.authenticator(name),
            crd_establish_seconds=self.settings["crd_delay"],
        )
        # Admission webhooks are answered by the pods behind their Services.
        kube.store.webhook_caller = ControllerWebhooks(kube.store)
        kube.start()
        self._stoppers.append(kube.stop)
        self._stores[site] = kube.store
        seed_cluster(kube.store)
        if self.second_team and site.key is None:
            seed_data_team(kube.store, facts["data_team_role_arn"])
        if self.leftovers and site.key is None:
            seed_leftovers(kube.store, facts["leftover_role_arn"])
        if self.adopted_controller and site.key is None:
            role = facts["adopted_role_arn"]
            seed_adopted_controller(kube.store, self.adopted_controller, name, role)
        record_crd_establishment(kube.store, name)  # after seeding: the estate's CRDs are old
        publish_cluster_endpoint(ACCOUNT, REGION, name, kube.url, tls.ca_pem)
        rollouts = DeploymentRollouts(kube.store, self.settings["rollout_delay"], cluster=name)
        rollouts.start()
        self._stoppers.append(rollouts.stop)
        controller = AlbControllerSimulator(
            kube.store,
            clients,
            name,
            REGION,
            ACCOUNT,
            self.settings["alb_delay"],
            reconcile_delay=self.settings["reconcile_delay"],
        )
        controller.start()
        self._stoppers.append(controller.stop)
        return ClusterAccess(kube.url, ca_pem=tls.ca_pem, exec_args=exec_args(self.directory, name))

    def _start_neighbour(self, clients: dict[str, Any], primary: dict[str, Any]) -> dict[str, Any]:
        """Another cluster in the primary cluster's VPC, whose controller resolves its
        subnets all the time (neighbour.py); what world.json publishes of it."""
        from orchestrator_sandbox.neighbour import NeighbourController, seed_neighbour

        facts = seed_neighbour(clients["eks"], clients["iam"], primary["private_subnet_ids"])
        controller = NeighbourController(clients["ec2"], primary["vpc_id"])
        controller.tick()  # its first outcome is logged before anyone else acts
        controller.start()
        self._stoppers.append(controller.stop)
        return {**facts, "vpc_id": primary["vpc_id"]}

    def _start_alb_endpoint(self, clients: dict[str, Any]) -> Any:
        """The front end the world's ALBs answer on, with certificates from the sandbox CA."""
        from orchestrator_sandbox.pki import SandboxCA
        from orchestrator_sandbox.tlsendpoint import AlbEndpoint

        self.ca = SandboxCA(self.directory)
        endpoint = AlbEndpoint(self.ca, clients["elbv2"], clients["acm"], clients["ec2"])
        endpoint.start()
        self._stoppers.append(endpoint.stop)
        return endpoint

    def _client(self, service: str, url: str, region: str = REGION) -> Any:
        import boto3
        from botocore.config import Config

        from orchestrator_sandbox.cloudtrail import SELF_AGENT

        return boto3.client(
            service,
            region_name=region,
            endpoint_url=url,
            config=Config(user_agent_extra=SELF_AGENT),
        )

    def _env(self) -> str:
        settings = {
            "AWS_ENDPOINT_URL": self.endpoints["aws"],
            **CREDENTIALS,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "ORCHESTRATOR_DNS_SERVERS": self.endpoints["dns"],
            "KUBECONFIG": str(self.directory / "kubeconfig"),
            "SSL_CERT_FILE": str(self.ca.cert_path),
            # Both spellings: where both are set, most clients (urllib, curl) read the
            # lower-case one, which might be the user's own proxy (curl reads only
            # http_proxy for http://). HTTP too: the ALBs' port 80 is reached through it.
            **{
                name: self.endpoints["proxy"]
                for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")
            },
            **{name: NO_PROXY for name in ("NO_PROXY", "no_proxy")},
        }
        lines = [
            "# Use the sandbox world: `source` this file. Standard AWS and Kubernetes",
            "# settings, the DNS resolver that plays the internet's DNS, the CA the",
            "# world's HTTPS endpoints chain to (trusted instead of the system's CAs), and",
            "# the proxy through which its ALBs are reached (not its own 127.0.0.1 APIs).",
            "unset AWS_PROFILE AWS_SESSION_TOKEN",
            *(f"export {k}={shlex.quote(v)}" for k, v in settings.items()),
        ]
        return "\n".join(lines) + "\n"

    def _write(self, name: str, text: str) -> None:
        path = self.directory / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)


def _published(seeded: dict[ClusterSite, dict[str, Any]]) -> dict[str, Any]:
    """world.json's `seeded`: the primary cluster's facts, and each other's under its key."""
    primary = next(facts for site, facts in seeded.items() if site.key is None)
    others = {site.key: facts for site, facts in seeded.items() if site.key is not None}
    return {**primary, **others}


if __name__ == "__main__":
    main()
