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
#   --ca-file FILE        PEM CA bundle that signed an https:// reconciler's certificate, when the
#                         system's CAs did not: curl uses it here, and it is installed as
#                         /etc/navarch/ca.pem for the agent [NAVARCH_CA_FILE]
#   --pin-sha256 FP       the reconciler certificate's SHA-256 fingerprint, for the agent to pin
#                         [NAVARCH_PIN_SHA256]
#   --client-cert FILE    client certificate and key for a reconciler that asks for one (mTLS),
#   --client-key FILE     used here and by the agent [NAVARCH_CLIENT_CERT, NAVARCH_CLIENT_KEY]
#   --agent-sha256 HEX    the SHA-256 the downloaded agent must have (say, from a release you
#                         trust); default: the one the reconciler put in this script
#                         [NAVARCH_AGENT_SHA256]
#
# Over https:// every download refuses a certificate curl cannot verify and any redirect to
# plain http://; the agent binary is checked against its SHA-256 before it is installed.
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
ca_file=${NAVARCH_CA_FILE:-}
pin_sha256=${NAVARCH_PIN_SHA256:-}
client_cert=${NAVARCH_CLIENT_CERT:-}
client_key=${NAVARCH_CLIENT_KEY:-}
agent_sha256=${NAVARCH_AGENT_SHA256:-$AGENT_SHA256}
extra_env=

while [ $# -gt 0 ]; do
  case $1 in
    -h|--help) say "options: --server URL --node-id ID --token TOKEN --agent-args ARGS --env KEY=VALUE --prefix DIR --start auto|systemd|background|none --ca-file FILE --pin-sha256 FP --client-cert FILE --client-key FILE --agent-sha256 HEX (see the comment at the top of this script)"; exit 0 ;;
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
    --ca-file) ca_file=$2 ;;
    --pin-sha256) pin_sha256=$2 ;;
    --client-cert) client_cert=$2 ;;
    --client-key) client_key=$2 ;;
    --agent-sha256) agent_sha256=$2 ;;
    *) die "unknown option $1 (options: --server --node-id --token --agent-args --env --prefix --start --ca-file --pin-sha256 --client-cert --client-key --agent-sha256)" ;;
  esac
  shift 2
done

[ -z "$AGENT_PROBLEM" ] || die "$AGENT_PROBLEM"
case $start in auto|systemd|background|none) ;; *) die "--start: expected auto, systemd, background or none, got '$start'" ;; esac
# Messages name the server without a user name or password written into its URL.
shown=$(printf '%s' "$server" | sed 's#//[^/@]*@#//#')
case $server in http://*|https://*) ;; *) die "--server: expected an http(s):// URL, got '$shown'" ;; esac
server=${server%/}
shown=${shown%/}
case $server in https://*) ;; *)
  [ -z "$ca_file$pin_sha256$client_cert$client_key" ] || die "--ca-file, --pin-sha256 and --client-cert apply to an https:// reconciler; --server is $shown" ;;
esac
[ -z "$ca_file" ] || [ -r "$ca_file" ] || die "--ca-file: cannot read $ca_file"
if [ -n "$client_cert$client_key" ]; then
  [ -n "$client_cert" ] && [ -n "$client_key" ] || die "--client-cert and --client-key go together"
  [ -r "$client_cert" ] && [ -r "$client_key" ] || die "--client-cert/--client-key: cannot read $client_cert or $client_key"
fi
agent_sha256=$(printf '%s' "$agent_sha256" | tr 'A-F' 'a-f')
case $agent_sha256 in
  '') ;;
  *[!0-9a-f]*) die "--agent-sha256: expected 64 hex digits, got '$agent_sha256'" ;;
  *) [ ${#agent_sha256} -eq 64 ] || die "--agent-sha256: expected 64 hex digits, got '$agent_sha256'" ;;
esac
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
command -v curl >/dev/null 2>&1 || die "curl is needed to download the agent from $shown"

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
# The CA this install trusted, kept for the agent (the file given may be a temporary one).
if [ -n "$ca_file" ] && [ "$ca_file" != "$etc_dir/ca.pem" ]; then
  cp "$ca_file" "$etc_dir/ca.pem.tmp" && chmod 0644 "$etc_dir/ca.pem.tmp" && mv -f "$etc_dir/ca.pem.tmp" "$etc_dir/ca.pem" || die "cannot write $etc_dir/ca.pem"
  ca_file=$etc_dir/ca.pem
fi

# curl URL FILE, with this reconciler's trust: its CA, a client certificate, and over
# https:// no fallback to plain http:// (not even through a redirect).
download() {
  set -- -fsSL --retry 5 --retry-delay 1 --connect-timeout 10 -o "$2" "$1"
  case $server in https://*) set -- --proto =https --proto-redir =https "$@" ;; esac
  [ -z "$ca_file" ] || set -- --cacert "$ca_file" "$@"
  [ -z "$client_cert" ] || set -- --cert "$client_cert" --key "$client_key" "$@"
  curl "$@"
}

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
  elif command -v shasum >/dev/null 2>&1; then shasum -a 256 "$1" | cut -d' ' -f1
  elif command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 -r "$1" | cut -d' ' -f1
  else return 1
  fi
}

# 1. The agent binary, from the reconciler itself, checked before it is installed.
tmp=$(mktemp "$bin_dir/.navarch-node.XXXXXX")
trap 'rm -f "$tmp"' EXIT
say "downloading navarch-node from $shown"
download "$server/download/navarch-node" "$tmp" ||
  die "could not download $shown/download/navarch-node (is the reconciler reachable from here, is its certificate trusted (--ca-file), and does it have its agent binary?)"
if [ -n "$agent_sha256" ]; then
  got=$(sha256_of "$tmp") || die "cannot check the agent's sha256: no sha256sum, shasum or openssl on this machine"
  [ "$got" = "$agent_sha256" ] || die "downloaded navarch-node has sha256 $got, expected $agent_sha256 (download corrupted or changed meanwhile); run the installer again"
  say "navarch-node sha256 $got checked"
else
  say "warning: no sha256 to check navarch-node against (this script came without one, and no --agent-sha256 was given)"
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
    [ -z "$ca_file" ] || env_line NAVARCH_CA_FILE "$ca_file"
    [ -z "$pin_sha256" ] || env_line NAVARCH_PIN_SHA256 "$pin_sha256"
    [ -z "$client_cert" ] || env_line NAVARCH_CLIENT_CERT "$client_cert"
    [ -z "$client_key" ] || env_line NAVARCH_CLIENT_KEY "$client_key"
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
say "done: node $node_id reports to $shown"
