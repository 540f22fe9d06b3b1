"""orchestrator: expose Kubeflow on Amazon EKS over HTTPS through an ALB, resumably."""

__version__ = "0.1.0"
