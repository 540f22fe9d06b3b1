"""The sandbox world's settings: how long its physics take, declared once.

`sandbox up` offers each as a flag (`acm_delay` as `--acm-delay`), the world's starter
passes them on to the world's process, and that process reads them back; a new setting
is added here only. Defaults are short, so a whole run takes seconds, but never zero:
every wait the real services impose is there, only faster. (`reconcile_delay`, the time
the controller's own AWS calls take, is zero: the sandbox's AWS answers at once.)

A profile (`--profile aws`) replaces the defaults with what AWS typically takes, scaled
by `--time-scale`; flags given explicitly win over both.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    name: str
    default: float
    help: str
    metavar: str = "SECONDS"  # what its flag takes, as `--help` names it

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


SETTINGS = (
    Setting("acm_delay", 5.0, "seconds ACM takes to issue once the validation record resolves"),
    Setting("alb_delay", 5.0, "seconds a new ALB stays `provisioning` before it is `active`"),
    Setting("dns_delay", 1.0, "seconds a Route 53 change stays PENDING before it is INSYNC"),
    Setting("target_delay", 2.0, "seconds new ALB targets stay `initial` before `healthy`"),
    Setting(
        "drain_delay", 2.0, "seconds a deleted ALB's network interfaces hold its security groups"
    ),
    Setting("crd_delay", 0.5, "seconds a new CustomResourceDefinition takes to be Established"),
    Setting(
        "rollout_delay",
        0.5,
        "seconds a Deployment takes to be available after a change: image pull and readiness",
    ),
    Setting(
        "reconcile_delay",
        0.0,
        "seconds every precondition must hold before the controller deploys a new ALB",
    ),
    Setting("token_ttl", 900.0, "seconds a cluster's bearer token is accepted (EKS: 900)"),
    Setting(
        "page_size",
        2.0,
        "items a page of every paginated AWS list (AWS: 50 to 1000, by API); 0: whole lists",
    ),
    Setting(
        "route53_rate",
        5.0,
        "Route 53 requests a second the account may make, beyond which it answers Throttling "
        "(AWS: 5); 0: no limit",
        metavar="N",
    ),
    Setting(
        "alias_delay",
        1.0,
        "seconds after a load balancer's creation before Route 53 accepts it as an alias target",
    ),
)
# Settings that are not latencies: a profile's time scale leaves them alone.
UNSCALED = frozenset({"token_ttl", "route53_rate", "page_size"})
PROFILES: dict[str, dict[str, float]] = {
    "aws": {
        # ACM validates within a few minutes once the validation record resolves.
        "acm_delay": 90.0,
        # A new ALB is `provisioning` for two to three minutes.
        "alb_delay": 150.0,
        # Route 53 changes are usually INSYNC within 60 seconds.
        "dns_delay": 40.0,
        # Route 53 learns of a new load balancer within seconds (AWS publishes no figure).
        "alias_delay": 5.0,
        # The controller's health checks run every 15 s; a target is healthy after 2.
        "target_delay": 30.0,
        # EC2 frees a deleted ALB's network interfaces within a minute or two.
        "drain_delay": 60.0,
        # The API server establishes a new CRD's names within about a second.
        "crd_delay": 1.0,
        # The controller's image pull, start and readiness probe.
        "rollout_delay": 30.0,
        # The controller's first deploy of a stack: a dozen AWS calls (security groups,
        # target group, load balancer, listeners) before CreateLoadBalancer's DNS name.
        "reconcile_delay": 5.0,
    },
}
SECOND_TEAM_HELP = (
    "seed another team's Ingress of class alb (team-data/dashboard) in the production cluster"
)
LEFTOVERS_HELP = (
    "seed what an earlier install of the load balancer controller left in the production "
    "cluster: its ServiceAccount naming another role (which exists in IAM), its webhook "
    "Secret and a ValidatingWebhookConfiguration of another CA"
)


ADOPTED_CONTROLLER_HELP = (
    "seed an AWS Load Balancer Controller of this release (v2.4.0) in the production "
    "cluster, installed by Helm, not by orchestrator"
)


SETUP_SCRIPT_CONFIG = "config-setup-script.yaml"  # in the world's directory
SETUP_SCRIPT_HELP = (
    "seed a deployment made by the old setup script (awslabs/kubeflow-manifests' "
    "setup_load_balancer.py) for the production cluster, as it makes one: untagged zone, "
    "certificates, eksctl's role, the kustomize controller v2.4.7, the Ingress, its ALB, a "
    "CNAME to it; and the config it writes back (config-setup-script.yaml)"
)


def defaults() -> dict[str, float]:
    return {s.name: s.default for s in SETTINGS}


def profile_settings(
    profile: str | None, time_scale: float, explicit: dict[str, float]
) -> dict[str, float]:
    """Every setting: the defaults, overlaid by the profile's latencies times `time_scale`,
    overlaid by the settings given explicitly."""
    profiled = PROFILES[profile] if profile else {}
    scaled = {n: v if n in UNSCALED else v * time_scale for n, v in profiled.items()}
    return {**defaults(), **scaled, **explicit}


def as_arguments(
    values: dict[str, float],
    second_team: bool = False,
    profile: str | None = None,
    time_scale: float = 1.0,
    leftovers: bool = False,
    adopted_controller: str | None = None,
    setup_script: bool = False,
) -> list[str]:
    """The world process's command-line arguments for these settings. The profile and time
    scale are only recorded by the world (in world.json): `values` already applies them."""
    arguments = []
    for setting in SETTINGS:
        arguments += [setting.flag, str(values.get(setting.name, setting.default))]
    if profile:
        arguments += ["--profile", profile]
    if time_scale != 1.0:
        arguments += ["--time-scale", str(time_scale)]
    arguments += ["--leftovers"] if leftovers else []
    arguments += ["--adopted-controller", adopted_controller] if adopted_controller else []
    arguments += ["--setup-script"] if setup_script else []
    return arguments + (["--second-team"] if second_team else [])
