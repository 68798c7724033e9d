"""Deployment checks: k8s manifests, container images, clients, the local multi-replica run."""
