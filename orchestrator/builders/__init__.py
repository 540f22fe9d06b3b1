"""Pure builders the phases share: Route 53 record sets, the load balancer controller's
manifests and IAM policy, its webhook's certificates."""
