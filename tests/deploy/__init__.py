"""Deploy files checked without a container engine: Prometheus rules, Grafana, compose, Kubernetes, AsyncAPI."""
