#!/bin/sh
# Navarch node agent installer. The reconciler serves this file at /install.sh with its
# own URL filled in, and its own copy of the agent at /download/navarch-node, so a new
# machine needs nothing else from the network:
#
#   curl -fsSL http://RECONCILER/install.sh | sudo NAVARCH_BOOTSTRAP_TOKEN=TOKEN sh
#   curl -fsSL http://RECONCILER/install.sh | sudo sh -s -- --token TOKEN --node-id gpu-7
#
# It installs /usr/local/bin/navarch-node, writes /etc/navarch/node.env (mode 0600: the
# server, the node id and the token), installs /etc/systemd/system/navarch-node.service
# and enables and starts it when systemd runs this machine (it says so when it does not).
#
# Options (each also read from the environment variable in brackets):
#   --server URL          reconciler URL [NAVARCH_SERVER] (default: the one that served this)
#   --node-id ID          this node's id [NAVARCH_NODE_ID] (default: the host name)
#   --token TOKEN         one-time bootstrap token [NAVARCH_BOOTSTRAP_TOKEN]; the agent
#                         exchanges it for its own credential at its first registration.
#                         (NAVARCH_AUTH_TOKEN, the fleet's shared token, also works.)
#   --agent-args "ARGS"   extra navarch-node arguments, e.g. "--poll-interval 5" [NAVARCH_NODE_ARGS]
#   --env KEY=VALUE       another variable for the agent's environment file (repeatable),
#                         e.g. --env NAVARCH_NVML_LIBRARY=/opt/nvidia/libnvidia-ml.so.1
#   --prefix DIR          install under DIR instead of / (a staging root, like DESTDIR);
#                         systemd is then left alone [NAVARCH_PREFIX, or DESTDIR]
#   --start MODE          auto (systemd when it runs this machine), systemd, background
#                         (start the agent now with nohup, for machines without systemd;
#                         pid in PREFIX/run/navarch-node.pid), or none [NAVARCH_START]
#
# Re-running it upgrades the agent in place; without a token it keeps the existing node.env.
set -eu

DEFAULT_SERVER='@@NAVARCH_SERVER@@'
AGENT_SHA256='@@AGENT_SHA256@@'
AGENT_PROBLEM='@@AGENT_PROBLEM@@'

say() { printf 'navarch-install: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

server=${NAVARCH_SERVER:-$DEFAULT_SERVER}
node_id=${NAVARCH_NODE_ID:-}
token=${NAVARCH_BOOTSTRAP_TOKEN:-}
token_var=NAVARCH_BOOTSTRAP_TOKEN
if [ -z "$token" ] && [ -n "${NAVARCH_AUTH_TOKEN:-}" ]; then
  token=$NAVARCH_AUTH_TOKEN
  token_var=NAVARCH_AUTH_TOKEN
fi
agent_args=${NAVARCH_NODE_ARGS:-}
prefix=${NAVARCH_PREFIX:-${DESTDIR:-}}
start=${NAVARCH_START:-auto}
extra_env=

while [ $# -gt 0 ]; do
  case $1 in
    -h|--help) say "options: --server URL --node-id ID --token TOKEN --agent-args ARGS --env KEY=VALUE --prefix DIR --start auto|systemd|background|none (see the comment at the top of this script)"; exit 0 ;;
  esac
  [ $# -ge 2 ] || die "$1 needs a value (see the comment at the top of install.sh)"
  case $1 in
    --server) server=$2 ;;
    --node-id) node_id=$2 ;;
    --token) token=$2; token_var=NAVARCH_BOOTSTRAP_TOKEN ;;
    --agent-args) agent_args=$2 ;;
    --env) extra_env="$extra_env$2
" ;;
    --prefix) prefix=$2 ;;
    --start) start=$2 ;;
    *) die "unknown option $1 (options: --server --node-id --token --agent-args --env --prefix --start)" ;;
  esac
  shift 2
done

[ -z "$AGENT_PROBLEM" ] || die "$AGENT_PROBLEM"
case $start in auto|systemd|background|none) ;; *) die "--start: expected auto, systemd, background or none, got '$start'" ;; esac
case $server in http://*|https://*) ;; *) die "--server: expected an http(s):// URL, got '$server'" ;; esac
server=${server%/}
[ -n "$node_id" ] || node_id=$(uname -n)
case $node_id in
  ''|*[!A-Za-z0-9._-]*|[._-]*|*[._-]) die "node id '$node_id' must be letters, digits, '.', '_' or '-', starting and ending with a letter or digit (set --node-id)" ;;
esac
prefix=${prefix%/}
case $prefix in ''|/*) ;; *) prefix=$(pwd)/$prefix ;; esac
case $(uname -s)/$(uname -m) in
  Linux/x86_64|Linux/amd64) ;;
  *) die "this reconciler serves a Linux x86-64 agent; this machine is $(uname -s)/$(uname -m)" ;;
esac
command -v curl >/dev/null 2>&1 || die "curl is needed to download the agent from $server"

# An environment file line: KEY=VALUE, single-quoted unless plain (systemd and sh read both).
env_line() {
  case $1 in ''|[0-9]*|*[!A-Za-z0-9_]*) die "--env: '$1' is not a variable name" ;; esac
  case $2 in
    *"'"*|*'
'*) die "--env $1: values with a quote or a newline are not supported" ;;
    *[!A-Za-z0-9_@%+=:,./-]*) printf "%s='%s'\n" "$1" "$2" ;;
    *) printf '%s=%s\n' "$1" "$2" ;;
  esac
}

bin_dir=$prefix/usr/local/bin
etc_dir=$prefix/etc/navarch
unit_dir=$prefix/etc/systemd/system
state_dir=$prefix/var/lib/navarch-node
env_file=$etc_dir/node.env
mkdir -p "$bin_dir" "$etc_dir" "$unit_dir" "$state_dir"
chmod 0700 "$state_dir"

# 1. The agent binary, from the reconciler itself.
tmp=$(mktemp "$bin_dir/.navarch-node.XXXXXX")
trap 'rm -f "$tmp"' EXIT
say "downloading navarch-node from $server"
curl -fsSL --retry 5 --retry-delay 1 --connect-timeout 10 -o "$tmp" "$server/download/navarch-node" ||
  die "could not download $server/download/navarch-node (is the reconciler reachable from here, and does it have its agent binary?)"
if [ -n "$AGENT_SHA256" ] && command -v sha256sum >/dev/null 2>&1; then
  got=$(sha256sum "$tmp" | cut -d' ' -f1)
  [ "$got" = "$AGENT_SHA256" ] || die "downloaded navarch-node has sha256 $got, expected $AGENT_SHA256 (download corrupted or changed meanwhile); run the installer again"
fi
chmod 0755 "$tmp"
version=$("$tmp" --version 2>&1) || die "the downloaded navarch-node does not run here: $version"
mv -f "$tmp" "$bin_dir/navarch-node"
trap - EXIT
say "installed $bin_dir/navarch-node $version"

# 2. Its environment file: the server, the node id and the token (mode 0600).
if [ -n "$token" ]; then
  old_umask=$(umask)
  umask 077
  {
    echo "# Written by the Navarch installer; read by navarch-node.service (EnvironmentFile)."
    env_line NAVARCH_SERVER "$server"
    env_line NAVARCH_NODE_ID "$node_id"
    env_line "$token_var" "$token"
    [ -z "$agent_args" ] || env_line NAVARCH_NODE_ARGS "$agent_args"
    printf '%s' "$extra_env" | while IFS= read -r kv; do
      [ -n "$kv" ] || continue
      case $kv in *=*) ;; *) die "--env: expected KEY=VALUE, got '$kv'" ;; esac
      env_line "${kv%%=*}" "${kv#*=}"
    done
  } >"$env_file.tmp"
  chmod 0600 "$env_file.tmp"
  mv -f "$env_file.tmp" "$env_file"
  umask "$old_umask"
  say "wrote $env_file (mode 0600)"
elif [ -f "$env_file" ]; then
  say "no token given: keeping the existing $env_file"
else
  die "no token: set NAVARCH_BOOTSTRAP_TOKEN (or pass --token); the reconciler mints one per node (POST /v1/bootstrap-tokens)"
fi

# 3. The systemd unit.
cat >"$unit_dir/navarch-node.service.tmp" <<'NAVARCH_UNIT'
@@NODE_UNIT@@
NAVARCH_UNIT
chmod 0644 "$unit_dir/navarch-node.service.tmp"
mv -f "$unit_dir/navarch-node.service.tmp" "$unit_dir/navarch-node.service"
say "installed $unit_dir/navarch-node.service"

# 4. Start it.
start_background() {
  run_dir=$prefix/run
  log_dir=$prefix/var/log
  mkdir -p "$run_dir" "$log_dir"
  pid_file=$run_dir/navarch-node.pid
  if [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
    kill "$(cat "$pid_file")" 2>/dev/null || true
    sleep 1
  fi
  rm -f "$pid_file"
  # In its own session, detached from this shell (and from an SSH session running it); the
  # agent's pid is written by the process itself once it is in that session.
  # NAVARCH_NODE_ARGS is split into words, as systemd does with an unbraced $VAR.
  (
    set -a
    . "$env_file"
    set +a
    exec setsid sh -c 'echo $$ >"$1"; shift; exec "$@"' navarch-node "$pid_file" \
      "$bin_dir/navarch-node" --server "$NAVARCH_SERVER" --node-id "$NAVARCH_NODE_ID" --state-dir "$state_dir" ${NAVARCH_NODE_ARGS:-} \
      >>"$log_dir/navarch-node.log" 2>&1 </dev/null
  ) &
  tries=0
  while [ ! -s "$pid_file" ] && [ $tries -lt 50 ]; do sleep 0.1; tries=$((tries + 1)); done
  [ -s "$pid_file" ] || die "navarch-node did not start; see $log_dir/navarch-node.log"
  say "started navarch-node in the background (pid $(cat "$pid_file"), log $log_dir/navarch-node.log)"
}

systemd_runs=no
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then systemd_runs=yes; fi
case $start in
  none) say "not starting the agent (--start none)" ;;
  background) start_background ;;
  auto|systemd)
    if [ -n "$prefix" ]; then
      say "installed under $prefix: not touching this machine's systemd"
      [ "$start" = auto ] || die "--start systemd cannot be used with --prefix"
    elif [ "$systemd_runs" = yes ]; then
      systemctl daemon-reload
      systemctl enable navarch-node.service >/dev/null 2>&1 || die "systemctl enable navarch-node failed"
      systemctl restart navarch-node.service || die "systemctl restart navarch-node failed; see: journalctl -u navarch-node"
      say "navarch-node.service enabled and started"
    else
      [ "$start" = auto ] || die "--start systemd: systemd does not run this machine"
      say "systemd does not run this machine (no systemctl or no /run/systemd/system): the unit is installed but not started;"
      say "start the agent yourself, or run this installer again with --start background"
    fi
    ;;
esac
say "done: node $node_id reports to $server"
