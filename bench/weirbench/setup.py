"""Installs and locates what the runner needs, caching everything outside the repository
(default ~/.cache/weir-bench, or $WEIR_BENCH_CACHE):

- fio and iperf3 from Debian packages (apt-get, when run as root);
- Apache Kafka (broker + tools) resolved by Maven from Maven Central through bench/pom.xml;
- rdkafka_performance, built with librdkafka's own configure/make from the librdkafka
  sources that the rdkafka-sys crate carries (fetched by `cargo fetch` of a throwaway
  manifest, with a throwaway CARGO_HOME; nothing Rust is built);
- the Weir release binary (`cargo build --release`, unless --no-build or WEIR_BIN).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
KAFKA_VERSION = os.environ.get("KAFKA_VERSION", "4.1.2")
# rdkafka-sys 4.10.0+2.12.1 carries librdkafka 2.12.1.
RDKAFKA_SYS_VERSION = os.environ.get("WEIR_BENCH_RDKAFKA_SYS", "4.10.0")


def cache_dir() -> Path:
    d = Path(os.environ.get("WEIR_BENCH_CACHE", Path.home() / ".cache" / "weir-bench"))
    d.mkdir(parents=True, exist_ok=True)
    return d


@dataclass
class Setup:
    weir_bin: Path | None = None
    kafka_lib: Path | None = None
    rdkafka_bin: Path | None = None
    have_fio: bool = False
    have_iperf3: bool = False
    notes: list[str] = field(default_factory=list)


def _run(cmd: list[str], log: Path, cwd: Path | None = None, env: dict | None = None) -> bool:
    with open(log, "ab") as f:
        f.write(("\n$ " + " ".join(cmd) + "\n").encode())
        f.flush()
        return subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=cwd, env=env) == 0


def ensure_apt(packages: list[str], log: Path, say) -> None:
    missing = [p for p in packages if shutil.which(p) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        say(f"  cannot install {' '.join(missing)}: not root or no apt-get")
        return
    say(f"  apt-get install {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    _run(["apt-get", "update", "-qq"], log, env=env)
    _run(["apt-get", "install", "-y", "-qq", *missing], log, env=env)


def ensure_kafka(log: Path, say) -> tuple[Path | None, str | None]:
    lib = cache_dir() / f"kafka-{KAFKA_VERSION}" / "lib"
    stamp = lib / ".resolved"
    if stamp.exists():
        return lib, None
    if shutil.which("java") is None or shutil.which("mvn") is None:
        if os.geteuid() == 0 and shutil.which("apt-get"):
            say("  apt-get install openjdk-17-jdk-headless maven")
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            _run(["apt-get", "update", "-qq"], log, env=env)
            _run(["apt-get", "install", "-y", "-qq", "openjdk-17-jdk-headless", "maven"], log, env=env)
        if shutil.which("java") is None or shutil.which("mvn") is None:
            return None, "java or mvn missing"
    say(f"  resolving Apache Kafka {KAFKA_VERSION} with Maven into {lib}")
    shutil.rmtree(lib, ignore_errors=True)
    ok = _run(["mvn", "-q", "-B", "-f", str(BENCH / "pom.xml"), "dependency:copy-dependencies",
               f"-Dkafka.version={KAFKA_VERSION}", "-DincludeScope=runtime",
               f"-DoutputDirectory={lib}"], log)
    if not ok or not list(lib.glob("kafka-tools-*.jar")):
        return None, f"Maven could not resolve Kafka {KAFKA_VERSION} (see {log})"
    stamp.write_text(KAFKA_VERSION + "\n")
    return lib, None


def ensure_rdkafka(log: Path, say) -> tuple[Path | None, str | None]:
    base = cache_dir()
    builds = sorted(base.glob("librdkafka-*/examples/rdkafka_performance"))
    if builds:
        return builds[-1], None
    for tool in ("cargo", "make", "gcc", "python3"):
        if shutil.which(tool) is None:
            return None, f"{tool} missing (needed to fetch/build librdkafka)"
    say(f"  fetching the rdkafka-sys {RDKAFKA_SYS_VERSION} crate (librdkafka sources) from crates.io")
    manifest_dir = base / "rdkafka-fetch"
    (manifest_dir / "src").mkdir(parents=True, exist_ok=True)
    (manifest_dir / "src" / "lib.rs").write_text("")
    (manifest_dir / "Cargo.toml").write_text(
        "# throwaway manifest: only `cargo fetch` runs on it, nothing is built\n"
        "[package]\nname = \"weir-bench-rdkafka-fetch\"\nversion = \"0.0.0\"\nedition = \"2021\"\n"
        "publish = false\n\n[dependencies]\n"
        f"rdkafka-sys = {{ version = \"={RDKAFKA_SYS_VERSION}\", default-features = false }}\n")
    env = dict(os.environ, CARGO_HOME=str(base / "cargo-home"))
    if not _run(["cargo", "fetch", "--manifest-path", str(manifest_dir / "Cargo.toml")], log, env=env):
        return None, f"cargo fetch of rdkafka-sys failed (see {log})"
    srcs = glob.glob(str(base / "cargo-home" / "registry" / "src" / "*" /
                         f"rdkafka-sys-{RDKAFKA_SYS_VERSION}*" / "librdkafka"))
    if not srcs:
        return None, "rdkafka-sys crate has no librdkafka/ directory"
    src = Path(srcs[0])
    version = src.parent.name.split("+")[-1]
    build = base / f"librdkafka-{version}"
    shutil.rmtree(build, ignore_errors=True)
    shutil.copytree(src, build)
    say(f"  building rdkafka_performance (librdkafka {version}, configure/make) in {build}")
    # Build logs go outside the source tree: mklove's configure loads every ./configure.*
    # file as a module.
    ok = (_run(["./configure", "--no-download", "--disable-ssl", "--disable-gssapi",
                "--disable-zstd", "--disable-curl", "--disable-lz4-ext", "--disable-zlib"], log, cwd=build)
          and _run(["nice", "-n", "10", "make", "-j2", "-C", "src", "lib"], log, cwd=build)
          and _run(["nice", "-n", "10", "make", "-C", "examples", "rdkafka_performance"], log, cwd=build))
    binary = build / "examples" / "rdkafka_performance"
    if not ok or not binary.exists():
        return None, f"librdkafka build failed (see {log})"
    return binary, None


def ensure_weir(weir_bin: str | None, build: bool, log: Path, say) -> Path:
    if weir_bin:
        return Path(weir_bin).resolve()
    if build:
        say("  cargo build --release")
        if not _run(["cargo", "build", "--release", "--manifest-path", str(REPO / "Cargo.toml")], log):
            raise SystemExit(f"cargo build --release failed (see {log})")
    binary = REPO / "target" / "release" / "weir"
    if not binary.exists():
        raise SystemExit(f"{binary} missing: build it (cargo build --release) or set WEIR_BIN")
    return binary


def prepare(args, log: Path, say) -> Setup:
    s = Setup()
    say("setup (cached under %s)" % cache_dir())
    s.weir_bin = ensure_weir(args.weir_bin or os.environ.get("WEIR_BIN"), args.build, log, say)
    if not args.no_limits:
        ensure_apt(["fio", "iperf3"], log, say)
        s.have_fio = shutil.which("fio") is not None
        s.have_iperf3 = shutil.which("iperf3") is not None
        if not (s.have_fio and s.have_iperf3):
            s.notes.append("physical limits not measured: fio/iperf3 unavailable")
    else:
        s.notes.append("physical limits not measured: --no-limits")
    s.kafka_lib, why = ensure_kafka(log, say)
    if why:
        s.notes.append(f"Kafka and Kafka's tools unavailable: {why}")
    if args.no_rdkafka:
        s.notes.append("librdkafka not used: --no-rdkafka")
    else:
        s.rdkafka_bin, why = ensure_rdkafka(log, say)
        if why:
            s.notes.append(f"rdkafka_performance unavailable: {why}")
    for note in s.notes:
        say("  NOTE " + note)
    return s
