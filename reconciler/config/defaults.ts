// The embedded defaults: what `navarch serve` and `navarch demo` run without
// --config. A reconciler on 127.0.0.1 with its database under ./data, and one
// pool of agents on this machine (the local provider).
export const EMBEDDED_DEFAULTS_SOURCE = "embedded defaults";

export const EMBEDDED_DEFAULTS_YAML = `
server:
  address: 127.0.0.1:50051
  heartbeat_interval: 5s
  health_check_interval: 10s
  data_dir: data

providers:
  local: {}

pools:
  - name: local
    provider: local
    instance_type: local-8gpu
    region: local
    scaling:
      min_nodes: 2
      max_nodes: 4
    health:
      unhealthy_threshold: 2
      auto_replace: true
      # Local nodes run no real work; a short deadline keeps the demo moving.
      drain_timeout: 1m
      registration_timeout: 2m
`;
