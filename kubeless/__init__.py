"""kubeless: a container orchestrator built on etcd the Kubernetes way."""
