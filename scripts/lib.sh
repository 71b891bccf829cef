#!/usr/bin/env bash
# Shared helpers for scripts/cluster and scripts/test. Source it, don't run it:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# It defines LANEQ_ROOT (the repository root) and these functions:
#   say / warn / die           print a message (die also exits 1)
#   have CMD                   is CMD on PATH?
#   fmt_duration SECONDS       "7s", "3m05s", "1h02m00s"
#   ensure_build_prereqs       cargo, a C++ compiler and libclang (RocksDB needs them);
#                              installs the missing system packages with apt-get when
#                              running as root, else prints the command and exits 1.
#   status_json_leader         reads `laneq cluster status -o json` on stdin and prints
#                              "LEADER_ID LEADER_ADDR", or nothing if there is no leader.

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    echo "scripts/lib.sh is a library: source it from another script." >&2
    exit 2
fi

LANEQ_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

say() { printf '%s\n' "$*"; }
warn() { printf '%s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

fmt_duration() {
    local s=$1
    if ((s >= 3600)); then
        printf '%dh%02dm%02ds' $((s / 3600)) $((s % 3600 / 60)) $((s % 60))
    elif ((s >= 60)); then
        printf '%dm%02ds' $((s / 60)) $((s % 60))
    else
        printf '%ds' "$s"
    fi
}

# rustup installs into ~/.cargo/bin, which non-login shells (CI, sudo) may not have on PATH.
if ! have cargo && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    export PATH
fi

# libclang is needed by bindgen (rocksdb's "bindgen-runtime" feature loads it at build time).
have_libclang() {
    if [[ -n "${LIBCLANG_PATH:-}" ]] && compgen -G "${LIBCLANG_PATH}/libclang*.so*" >/dev/null; then
        return 0
    fi
    # On Debian, ask dpkg: a fresh machine already has libclang-cpp14, whose
    # file names look like libclang's but which bindgen cannot use, and
    # bindgen also needs the clang headers that libclang-dev brings.
    if have dpkg-query; then
        dpkg-query -W -f='${Status}' libclang-dev 2>/dev/null | grep -q 'install ok installed'
        return
    fi
    # Elsewhere: libclang.so or libclang-NN.so, never libclang-cpp.
    if have ldconfig && ldconfig -p 2>/dev/null | grep -Eq 'libclang(-[0-9.]+)?\.so'; then
        return 0
    fi
    compgen -G '/usr/lib/llvm-*/lib/libclang.so*' >/dev/null
}

have_cxx() {
    have c++ || have g++ || have clang++
}

# Install Debian/Ubuntu packages if we are root, else tell the user how and exit 1.
_apt_install() {
    local why=$1
    shift
    if [[ $(id -u) -eq 0 ]] && have apt-get; then
        say "Installing $* ($why) with apt-get..."
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q || die "apt-get update failed"
        apt-get install -y -q --no-install-recommends "$@" || die "apt-get install $* failed"
    else
        warn "error: missing $why."
        warn "Install with:"
        warn "    sudo apt-get update && sudo apt-get install -y $*"
        exit 1
    fi
}

# etcd (the benchmark's other system) and protoc (to build etcd's client).
missing_bench_prereqs() {
    local pkgs=()
    have etcd || pkgs+=(etcd-server)
    have protoc || pkgs+=(protobuf-compiler)
    echo "${pkgs[@]}"
}

ensure_build_prereqs() {
    if ! have cargo; then
        die "cargo not found. Install Rust with https://rustup.rs (curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh)."
    fi
    local pkgs=()
    have_cxx || pkgs+=(build-essential)
    have_libclang || pkgs+=(libclang-dev)
    if ((${#pkgs[@]} > 0)); then
        _apt_install "build prerequisites for RocksDB (a C++ compiler and libclang)" "${pkgs[@]}"
        have_libclang || die "libclang is still not found after installing libclang-dev."
        have_cxx || die "no C++ compiler found after installing build-essential."
    fi
}

# stdin: output of `laneq cluster status -o json`. stdout: "ID ADDR" of the leader, or
# nothing (and status 1) if leader_id is null or the input is not JSON.
status_json_leader() {
    if have jq; then
        jq -er '
            select(.leader_id != null)
            | .leader_id as $l
            | "\($l) \([(.members // [])[] | select(.id == $l) | .addr][0] // "?")"
        ' 2>/dev/null
    elif have python3; then
        python3 -c '
import json, sys
text = sys.stdin.read()
start = text.find("{")
if start < 0:
    sys.exit(1)
try:
    doc, _ = json.JSONDecoder().raw_decode(text[start:])
except ValueError:
    sys.exit(1)
leader = doc.get("leader_id")
if leader is None:
    sys.exit(1)
addr = next((m.get("addr") for m in doc.get("members") or [] if m.get("id") == leader), "?")
print(leader, addr)
'
    else
        die "need jq or python3 to read 'laneq cluster status -o json'."
    fi
}
