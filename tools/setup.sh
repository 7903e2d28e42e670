#!/usr/bin/env bash
# Install what is missing (Debian 12, apt), make libtorch run on OpenBLAS (openmp), configure, build.
# Usage: tools/setup.sh [BUILD_DIR [TARGET...]]   (default: build, every target)
# DRAFTEU_CMAKE_ARGS: extra arguments for the first configure of BUILD_DIR (word-split), e.g.
# "-DDRAFTEU_SANITIZE=address,undefined" (tools/quickstart.sh test-sanitize).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
shift || true
targets=("$@")  # e.g. drafteu_cli: only the CLI, not the tests and benchmarks

packages=(build-essential cmake ninja-build pkg-config ccache git
          libtorch-dev libopenblas0-openmp nlohmann-json3-dev libcli11-dev libpcre2-dev
          libcpp-httplib-dev libssl-dev libgtest-dev libgmock-dev libbenchmark-dev
          python3-torch gnuplot-nox chromium prometheus)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# npm may come with a Node.js that is not Debian's (whose npm package would conflict with it).
command -v npm >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=(); [[ $(id -u) == 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# libtorch links libblas.so.3/liblapack.so.3: point those alternatives at OpenBLAS's openmp build
# (the reference BLAS is 10-25x slower; the pthread build oversubscribes next to OpenMP).
arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
ob=/usr/lib/$arch/openblas-openmp
for lib in libblas.so.3 liblapack.so.3 libopenblas.so.0; do
  want="$ob/$lib"
  have=$(update-alternatives --query "$lib-$arch" 2>/dev/null | sed -n 's/^Value: //p')
  if [[ -e $want && $have != "$want" ]]; then
    sudo_cmd=(); [[ $(id -u) == 0 ]] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" update-alternatives --set "$lib-$arch" "$want"
  fi
done

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
if [[ ! -f $build/CMakeCache.txt ]]; then
  read -r -a extra <<<"${DRAFTEU_CMAKE_ARGS:-}"
  cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "${extra[@]}"
fi
if ((${#targets[@]})); then
  cmake --build "$build" --parallel "$(nproc)" --target "${targets[@]}"
else
  cmake --build "$build" --parallel "$(nproc)"
fi
