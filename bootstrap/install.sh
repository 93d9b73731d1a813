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
#   --public-key KEY      the minisign public key (RWQ…) the agent's release must be signed with;
#                         default: the one the reconciler put in this script, when it serves a
#                         signed release [NAVARCH_RELEASE_PUBLIC_KEY]
#
# Over https:// every download refuses a certificate curl cannot verify and any redirect to
# plain http://; the agent binary is checked against its SHA-256 before it is installed. With a
# public key, the release's SHA256SUMS must carry a valid signature by that key (checked with
# minisign when installed, else OpenSSL 3) and the binary must have the SHA-256 it lists.
#
# Re-running it upgrades the agent in place; without a token it keeps the existing node.env.
set -eu

DEFAULT_SERVER='@@NAVARCH_SERVER@@'
AGENT_SHA256='@@AGENT_SHA256@@'
RELEASE_PUBLIC_KEY='@@RELEASE_PUBLIC_KEY@@'
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
public_key=${NAVARCH_RELEASE_PUBLIC_KEY:-$RELEASE_PUBLIC_KEY}
extra_env=

while [ $# -gt 0 ]; do
  case $1 in
    -h|--help) say "options: --server URL --node-id ID --token TOKEN --agent-args ARGS --env KEY=VALUE --prefix DIR --start auto|systemd|background|none --ca-file FILE --pin-sha256 FP --client-cert FILE --client-key FILE --agent-sha256 HEX --public-key KEY (see the comment at the top of this script)"; exit 0 ;;
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
    --public-key) public_key=$2 ;;
    *) die "unknown option $1 (options: --server --node-id --token --agent-args --env --prefix --start --ca-file --pin-sha256 --client-cert --client-key --agent-sha256 --public-key)" ;;
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
# A minisign public key: "Ed", its key id and the key, 42 bytes as 56 base64 characters.
not_a_key="--public-key: expected a minisign public key (56 base64 characters starting RW), got '$public_key'"
case $public_key in
  '') ;;
  RW*[!A-Za-z0-9+/]*) die "$not_a_key" ;;
  RW*) [ ${#public_key} -eq 56 ] || die "$not_a_key" ;;
  *) die "$not_a_key" ;;
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

# Verification. With a public key, the reconciler must serve a signed release: SHA256SUMS and
# SHA256SUMS.minisig (minisign's prehashed Ed25519 signature over it), both checked here before
# the SHA-256 that SHA256SUMS lists for navarch-node is trusted. minisign checks them when it is
# installed; otherwise OpenSSL 3 does the same checks: the key ids, the Ed25519 signature over
# SHA256SUMS's BLAKE2b-512, and the signature over the trusted comment. Sets agent_sha256.
bytes_hex() { od -An -tx1 | tr -d ' \n'; }
# A key id as minisign prints it: its 8 bytes as a little-endian number in upper-case hex.
key_id() {
  id=
  for b in $(printf '%s' "$1" | sed 's/../& /g'); do id=$b$id; done
  printf '%s' "$id" | tr 'a-f' 'A-F'
}
verify_with_openssl() {
  v=$1
  case $(openssl version 2>/dev/null) in
    'OpenSSL '[3-9].*) ;;
    *) die "cannot check the release's signature: it needs minisign or OpenSSL 3 (Ed25519), and this machine has $(openssl version 2>/dev/null || echo 'neither')" ;;
  esac
  printf '%s' "$public_key" | openssl base64 -d -A >"$v/key" 2>/dev/null
  [ "$(wc -c <"$v/key")" -eq 42 ] || die "--public-key: '$public_key' is not a minisign public key"
  sed -n 1p "$v/sig" | grep -q '^untrusted comment: ' || die "$SIG_NAME from $shown is not a minisign signature (line 1)"
  sed -n 2p "$v/sig" | tr -d '\r' | openssl base64 -d -A >"$v/line2" 2>/dev/null
  [ "$(wc -c <"$v/line2")" -eq 74 ] || die "$SIG_NAME from $shown is not a minisign signature (line 2)"
  alg=$(dd if="$v/line2" bs=1 count=2 2>/dev/null)
  [ "$alg" = ED ] || die "$SIG_NAME from $shown: algorithm '$alg', expected ED (minisign's prehashed Ed25519)"
  signed_by=$(dd if="$v/line2" bs=1 skip=2 count=8 2>/dev/null | bytes_hex)
  ours=$(dd if="$v/key" bs=1 skip=2 count=8 2>/dev/null | bytes_hex)
  [ "$signed_by" = "$ours" ] || die "$SUMS_NAME from $shown is signed with key id $(key_id "$signed_by"), but the public key's id is $(key_id "$ours") (wrong key, or not the release you expect)"
  # The key as DER SubjectPublicKeyInfo (RFC 8410's 12-byte prefix) for openssl.
  printf '\060\052\060\005\006\003\053\145\160\003\041\000' >"$v/key.der"
  dd if="$v/key" bs=1 skip=10 count=32 2>/dev/null >>"$v/key.der"
  dd if="$v/line2" bs=1 skip=10 count=64 2>/dev/null >"$v/signature"
  openssl dgst -blake2b512 -binary "$v/sums" >"$v/prehash" || die "openssl cannot compute BLAKE2b-512 here"
  openssl pkeyutl -verify -pubin -inkey "$v/key.der" -keyform DER -rawin -in "$v/prehash" -sigfile "$v/signature" >/dev/null 2>&1 ||
    die "$SUMS_NAME from $shown does not match its signature (key id $(key_id "$ours")): SHA256SUMS or its signature was changed; not installing"
  trusted=$(sed -n 3p "$v/sig" | tr -d '\r')
  case $trusted in 'trusted comment: '*) ;; *) die "$SIG_NAME from $shown is not a minisign signature (line 3)" ;; esac
  { cat "$v/signature"; printf '%s' "${trusted#trusted comment: }"; } >"$v/global"
  sed -n 4p "$v/sig" | tr -d '\r' | openssl base64 -d -A >"$v/global.sig" 2>/dev/null
  openssl pkeyutl -verify -pubin -inkey "$v/key.der" -keyform DER -rawin -in "$v/global" -sigfile "$v/global.sig" >/dev/null 2>&1 ||
    die "$SIG_NAME from $shown: the trusted comment does not match its signature (it was changed); not installing"
  say "$SUMS_NAME signature verified with openssl (key id $(key_id "$ours")): ${trusted#trusted comment: }"
}
verify_release() {
  SUMS_NAME=SHA256SUMS
  SIG_NAME=SHA256SUMS.minisig
  v=$(mktemp -d)
  trap 'rm -rf "$v"' EXIT
  download "$server/download/$SUMS_NAME" "$v/sums" && download "$server/download/$SIG_NAME" "$v/sig" ||
    die "a signed release is expected (public key $public_key), but $shown serves no $SUMS_NAME and $SIG_NAME (is server.agent_release set there?)"
  if command -v minisign >/dev/null 2>&1; then
    out=$(minisign -V -H -P "$public_key" -m "$v/sums" -x "$v/sig" 2>&1) ||
      die "$SUMS_NAME from $shown does not verify with public key $public_key: $(printf '%s' "$out" | tr '\n' ' ' | sed 's/ *$//'); SHA256SUMS or its signature was changed, or another key signed it; not installing"
    say "$SUMS_NAME signature verified with minisign: $(printf '%s' "$out" | sed -n 's/^Trusted comment: //p')"
  else
    verify_with_openssl "$v"
  fi
  lines=$(grep -c ' [ *]navarch-node$' "$v/sums" || true)
  [ "$lines" = 1 ] || die "the signed $SUMS_NAME lists navarch-node $lines times, expected once"
  signed=$(sed -n 's/^\([0-9a-fA-F]\{64\}\) [ *]navarch-node$/\1/p' "$v/sums" | tr 'A-F' 'a-f')
  [ ${#signed} -eq 64 ] || die "the signed $SUMS_NAME has no SHA-256 for navarch-node"
  if [ -n "$agent_sha256" ] && [ "$agent_sha256" != "$signed" ]; then
    die "the signed $SUMS_NAME says navarch-node has sha256 $signed, but $agent_sha256 was expected (--agent-sha256, or the one this script came with); not installing"
  fi
  agent_sha256=$signed
  sha256_source="the signed $SUMS_NAME"
  rm -rf "$v"
  trap - EXIT
}

# 1. The agent binary, from the reconciler itself, checked before it is installed.
sha256_source="this script's (or --agent-sha256)"
if [ -n "$public_key" ]; then
  verify_release
else
  say "no public key to check a release signature with (this reconciler serves no signed release, and no --public-key was given)"
fi
tmp=$(mktemp "$bin_dir/.navarch-node.XXXXXX")
trap 'rm -f "$tmp"' EXIT
say "downloading navarch-node from $shown"
download "$server/download/navarch-node" "$tmp" ||
  die "could not download $shown/download/navarch-node (is the reconciler reachable from here, is its certificate trusted (--ca-file), and does it have its agent binary?)"
if [ -n "$agent_sha256" ]; then
  got=$(sha256_of "$tmp") || die "cannot check the agent's sha256: no sha256sum, shasum or openssl on this machine"
  [ "$got" = "$agent_sha256" ] || die "downloaded navarch-node has sha256 $got, but $sha256_source says $agent_sha256 (download corrupted or changed meanwhile); not installing it"
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
