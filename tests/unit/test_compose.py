"""docker-compose.yml, Dockerfile, .env.example and `make compose-env` against the native stack.

The native stack's Airflow settings are deploy/stack.env (KEY=value with ${VAR} filled in by
deploy/native-stack.sh); the compose stack must carry every one of those keys, in every Airflow
container, with the same value once the native hosts are replaced by the container ones, and with
its secrets taken from .env. Fast (no Docker engine, no network): the compose file is read with
PyYAML and interpolated here the way compose does it; `docker compose config` runs only where the
docker CLI has the compose plugin."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

PROJECT = Path(__file__).resolve().parents[2]
COMPOSE = PROJECT / "docker-compose.yml"
DOCKERFILE = PROJECT / "Dockerfile"
DOCKERIGNORE = PROJECT / ".dockerignore"
ENV_EXAMPLE = PROJECT / ".env.example"
STACK_ENV = PROJECT / "deploy" / "stack.env"
NATIVE_STACK = PROJECT / "deploy" / "native-stack.sh"
LOCK = PROJECT / "requirements.lock"
MAKEFILE = PROJECT / "Makefile"

INIT = "airflow-init"
LONG_RUNNING_AIRFLOW = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                        "airflow-triggerer", "airflow-worker")
AIRFLOW_SERVICES = LONG_RUNNING_AIRFLOW + (INIT,)
OTHER_LONG_RUNNING = ("postgres", "redis", "mailpit")

#: The settings that are secrets, and the .env variable each must come from.
SECRET_KEYS = {
    "AIRFLOW__API_AUTH__JWT_SECRET": "AIRFLOW_JWT_SECRET",
    "AIRFLOW__API__SECRET_KEY": "AIRFLOW_API_SECRET_KEY",
    "AIRFLOW__CORE__FERNET_KEY": "AIRFLOW_FERNET_KEY",
}
#: What the test interpolates the compose file with: distinct values, none of them a stand-in.
ENV = {
    "AIRFLOW_UID": "1234",
    "AIRFLOW_JWT_SECRET": "jwt-sentinel-Q1",
    "AIRFLOW_API_SECRET_KEY": "api-key-sentinel-Q2",
    "AIRFLOW_FERNET_KEY": "0hIIhgRfCbSPlCXIxsQmkRcZtg8AvcAJ-n5Ekel7ZpY=",
    "AIRFLOW_ADMIN_PASSWORD": "admin-pw-sentinel-Q3",
    "AIRFLOW_VIEWER_PASSWORD": "viewer-pw-sentinel-Q4",
    "POSTGRES_PASSWORD": "pg-pw-sentinel-Q5",
    "VENUE_RISK_PSEUDONYM_KEY": "pseudonym-sentinel-Q6",
    "VENUE_RISK_START_DATE": "2026-11-01",
}
#: deploy/stack.env's ${VAR}s in the compose stack: the container host names and ports, and the
#: secrets from .env. The native stack's Postgres user connects by trust; compose's has a password.
CONTAINER_VARS = {
    "STACK_PG_USER": "airflow:" + ENV["POSTGRES_PASSWORD"],
    "STACK_PG_HOST": "postgres",
    "STACK_PG_PORT": "5432",
    "STACK_DB": "airflow",
    "STACK_REDIS_URL": "redis://redis:6379/0",
    "STACK_API_HOST": "airflow-apiserver",
    "STACK_API_PORT": "8080",
    "STACK_WORKER_LOG_PORT": "8793",
    "STACK_TRIGGER_LOG_PORT": "8794",
    "AIRFLOW_HOME": "/opt/airflow",
    "STACK_JWT_SECRET": ENV["AIRFLOW_JWT_SECRET"],
    "STACK_API_SECRET_KEY": ENV["AIRFLOW_API_SECRET_KEY"],
    "STACK_FERNET_KEY": ENV["AIRFLOW_FERNET_KEY"],
}
#: Test-only packages of requirements.lock that must stay out of the image.
TEST_PACKAGES = {"pytest", "aiosmtpd", "hypothesis", "pypdf", "sortedcontainers"}
PLACEHOLDER = re.compile(r"change[-_ ]?me|replace[-_ ]?me|changeit|^example-|^xxx+$|^todo$", re.I)
REQUIRED_VAR = re.compile(r"\$\{([A-Z][A-Z0-9_]*):\?[^}]+\}")


# -- reading the files ------------------------------------------------------------------------------

_INTERPOLATION = re.compile(
    r"\$(?:(?P<dollar>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error},
    ${VAR?error}, ${VAR:+alt}, ${VAR+alt}; a missing required variable raises ValueError."""
    def one(match: re.Match) -> str:
        if match["dollar"]:
            return "$"
        name = match["braced"] or match["plain"]
        value, op, arg = env.get(name), match["op"], match["arg"]
        unset_or_empty = value is None or (value == "" and op and op.startswith(":"))
        if op in (":-", "-"):
            return arg if unset_or_empty else value
        if op in (":?", "?"):
            if unset_or_empty:
                raise ValueError(f"required variable {name} missing: {arg}")
            return value
        if op in (":+", "+"):
            return "" if unset_or_empty else arg
        return value or ""
    return _INTERPOLATION.sub(one, text)


def resolve(node, env: dict[str, str]):
    """The compose file's parsed YAML with every string interpolated."""
    if isinstance(node, dict):
        return {key: resolve(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(value, env) for value in node]
    return interpolate(node, env) if isinstance(node, str) else node


@pytest.fixture(scope="module")
def raw() -> dict:
    """docker-compose.yml as written (YAML anchors and merge keys applied, ${...} not)."""
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def compose(raw) -> dict:
    """docker-compose.yml interpolated with ENV."""
    return resolve(raw, ENV)


def stack_env() -> dict[str, str]:
    """deploy/stack.env: KEY -> value template (with ${VAR}s)."""
    out = {}
    for line in STACK_ENV.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    assert out, "deploy/stack.env has no settings"
    return out


def env_file_keys(path: Path) -> dict[str, str]:
    """KEY=value lines of a .env file (comments and blank lines skipped)."""
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def volume_targets(service: dict) -> dict[str, str]:
    """Container path -> source (host path, relative to the project, or volume name)."""
    out = {}
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            out[entry["target"]] = entry.get("source", "")
        else:
            parts = entry.split(":")
            out[parts[1]] = parts[0]
    return out


def init_script(compose: dict) -> str:
    """airflow-init's bash script (the argument of -c)."""
    command = compose["services"][INIT]["command"]
    assert isinstance(command, list) and command[0] == "-c", "airflow-init: bash -c SCRIPT"
    assert compose["services"][INIT]["entrypoint"] in ("/bin/bash", ["/bin/bash"], "bash")
    return command[1]


def script_commands(script: str) -> list[list[str]]:
    """Shell command lines of a script (continuations joined), split into words; heredoc bodies
    are skipped."""
    lines, out, heredoc_end = script.replace("\\\n", " ").splitlines(), [], None
    for line in lines:
        if heredoc_end is not None:
            if line.strip() == heredoc_end:
                heredoc_end = None
            continue
        marker = re.search(r"<<-?\s*'?\"?(\w+)", line)
        if marker:
            heredoc_end = marker.group(1)
        if line.strip() and not line.strip().startswith("#"):
            out.append(shlex.split(line, comments=True))
    return out


def lock_pins() -> dict[str, str]:
    return {m.group(1).lower(): m.group(2)
            for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==(\S+)", LOCK.read_text(), re.M)}


def lock_parents() -> dict[str, set[str]]:
    """Package -> what the lock's "# via" notes say pulls it in ("-r requirements.in": direct)."""
    parents, current = {}, None
    for line in LOCK.read_text().splitlines():
        pin = re.match(r"^([A-Za-z0-9_.\-]+)==", line)
        if pin:
            current = pin.group(1).lower()
            parents[current] = set()
            continue
        note = re.match(r"^\s+#\s+(?:via\s+)?(\S.*)$", line)
        if note and current and note.group(1).strip() != "via":
            parents[current].add(note.group(1).strip().lower())
    return parents


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = "\n".join(line for line in DOCKERFILE.read_text().splitlines()
                     if not line.lstrip().startswith("#"))
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerfile_arg(name: str) -> str:
    for instruction, args in dockerfile_instructions():
        if instruction == "ARG" and args.startswith(name + "="):
            return shlex.split(args.partition("=")[2])[0]
    raise AssertionError(f"Dockerfile has no ARG {name}=...")


def pip_installs() -> list[list[str]]:
    """The words of every `pip install` command in the Dockerfile's RUN instructions."""
    out = []
    for instruction, args in dockerfile_instructions():
        if instruction != "RUN":
            continue
        for command in re.split(r"&&|\|\||;|\|", args):
            words = shlex.split(command)
            for i in range(len(words) - 1):
                if words[i] in ("pip", "pip3", "uv") or words[i].endswith("/pip"):
                    if words[i + 1] == "install" or words[i + 1:i + 3] == ["pip", "install"]:
                        out.append(words[i:])
                        break
                if words[i:i + 3] == ["python", "-m", "pip"] or words[i:i + 3] == ["python3", "-m", "pip"]:
                    out.append(words[i + 2:])
                    break
    return out


# -- (1) the native stack's settings, in every Airflow container ----------------------------------------

def test_every_stack_env_key_is_in_every_airflow_service_with_the_container_value(compose):
    expected = {}
    for key, template in stack_env().items():
        unknown = set(re.findall(r"\$\{(\w+)\}", template)) - set(CONTAINER_VARS)
        assert not unknown, (f"deploy/stack.env {key} uses {sorted(unknown)}: add the compose "
                             "stack's value to CONTAINER_VARS in this test (and to docker-compose.yml)")
        expected[key] = re.sub(r"\$\{(\w+)\}", lambda m: CONTAINER_VARS[m.group(1)], template)
    for name in AIRFLOW_SERVICES:
        environment = compose["services"][name]["environment"]
        assert isinstance(environment, dict), f"{name}: environment as a mapping"
        for key, value in expected.items():
            assert key in environment, f"{name}: {key} of deploy/stack.env is missing"
            assert isinstance(environment[key], str), f"{name}: quote {key}'s value ({environment[key]!r})"
            assert environment[key] == value, f"{name}: {key}={environment[key]!r}, stack.env gives {value!r}"


def test_container_hosts_and_executor(compose):
    for name in AIRFLOW_SERVICES:
        env = compose["services"][name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis:6379/0"
        db = urlsplit(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
        assert (db.scheme, db.hostname, db.path) == ("postgresql+psycopg2", "postgres", "/airflow")
        backend = urlsplit(env["AIRFLOW__CELERY__RESULT_BACKEND"])
        assert (backend.scheme, backend.hostname, backend.path) == ("db+postgresql", "postgres", "/airflow")
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
        assert env["AIRFLOW_CONN_SMTP_DEFAULT"].startswith("smtp://mailpit:1025")
        assert env["VENUE_RISK_ALERT_RECIPIENTS"].strip(), f"{name}: VENUE_RISK_ALERT_RECIPIENTS empty"
        assert env["VENUE_RISK_START_DATE"] == ENV["VENUE_RISK_START_DATE"]
        assert env["VENUE_RISK_PSEUDONYM_KEY"] == ENV["VENUE_RISK_PSEUDONYM_KEY"]
    services = compose["services"]
    assert "airflow-apiserver" in services and "8080" in str(services["airflow-apiserver"].get("ports"))
    for host in ("postgres", "redis", "mailpit"):
        assert host in services, f"no {host} service"
    assert services["postgres"]["environment"]["POSTGRES_USER"] == "airflow"
    assert services["postgres"]["environment"]["POSTGRES_DB"] == "airflow"
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == ENV["POSTGRES_PASSWORD"]


def test_init_migrates_and_creates_the_native_stacks_pool(compose):
    native = [shlex.split(line.strip()) for line in NATIVE_STACK.read_text().splitlines()
              if re.search(r"airflow\"?\s+pools\s+set", line)]
    assert len(native) == 1, "deploy/native-stack.sh: one `airflow pools set` line"
    native_pool = native[0][native[0].index("pools"):]
    native_pool = native_pool[:next((i for i, w in enumerate(native_pool) if w.startswith(">")),
                                    len(native_pool))]
    commands = script_commands(init_script(compose))
    airflow = [words[words.index("airflow") + 1:] for words in commands if "airflow" in words]
    assert ["db", "migrate"] in airflow, "airflow-init must run airflow db migrate"
    assert native_pool in airflow, f"airflow-init must run airflow {shlex.join(native_pool)}"
    assert native_pool[:4] == ["pools", "set", "venue_risk_warehouse", "1"]
    assert airflow.index(["db", "migrate"]) < airflow.index(native_pool)


def test_local_settings_are_mounted_in_every_airflow_service(compose):
    for name in AIRFLOW_SERVICES:
        targets = volume_targets(compose["services"][name])
        source = targets.get("/opt/airflow/config/airflow_local_settings.py")
        assert source, f"{name}: deploy/airflow_local_settings.py not mounted in /opt/airflow/config"
        assert (PROJECT / source).resolve() == (PROJECT / "deploy" / "airflow_local_settings.py").resolve()


def test_shared_logs_and_project_folders(compose):
    volumes = compose.get("volumes") or {}
    for name in AIRFLOW_SERVICES:
        targets = volume_targets(compose["services"][name])
        logs = targets.get("/opt/airflow/logs")
        assert logs, f"{name}: no shared /opt/airflow/logs"
        assert logs in volumes or logs.startswith("."), f"{name}: logs on {logs!r}"
        for folder in ("data", "reports", "outbox"):
            assert targets.get(f"/opt/venue-risk/{folder}") == f"./{folder}", f"{name}: ./{folder} not mounted"
        assert compose["services"][name]["environment"]["VENUE_RISK_HOME"] == "/opt/venue-risk"
        passwords = compose["services"][name]["environment"]["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
        parent = str(Path(passwords).parent)
        assert targets.get(parent) in volumes, f"{name}: the passwords file {passwords} is not on a shared volume"


# -- (2) secrets from .env -----------------------------------------------------------------------------

def test_secrets_are_required_interpolations_from_env(raw):
    env_example = env_file_keys(ENV_EXAMPLE)
    for name in AIRFLOW_SERVICES:
        environment = raw["services"][name]["environment"]
        for key, variable in SECRET_KEYS.items():
            match = REQUIRED_VAR.fullmatch(str(environment[key]))
            assert match and match.group(1) == variable, \
                f"{name}: {key} must be ${{{variable}:?...}}, is {environment[key]!r}"
        for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND"):
            # user:password@host of the URL as written (urlsplit would take ${X:?...}'s "?" for a query)
            userinfo = str(environment[key]).partition("://")[2].rpartition("@")[0]
            password = userinfo.partition(":")[2]
            match = REQUIRED_VAR.fullmatch(password)
            assert match and match.group(1) == "POSTGRES_PASSWORD", \
                f"{name}: {key}'s password must be ${{POSTGRES_PASSWORD:?...}}, is {password!r}"
        for key in ("VENUE_RISK_PSEUDONYM_KEY", "VENUE_RISK_START_DATE"):
            match = REQUIRED_VAR.fullmatch(str(environment[key]))
            assert match and match.group(1) == key, f"{name}: {key} must be ${{{key}:?...}}"
    postgres_password = REQUIRED_VAR.fullmatch(str(raw["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"]))
    assert postgres_password and postgres_password.group(1) == "POSTGRES_PASSWORD"
    init_env = raw["services"][INIT]["environment"]
    for variable in ("AIRFLOW_ADMIN_PASSWORD", "AIRFLOW_VIEWER_PASSWORD"):
        match = REQUIRED_VAR.fullmatch(str(init_env.get(variable, "")))
        assert match and match.group(1) == variable, f"airflow-init: {variable} must be ${{{variable}:?...}}"
        for name in LONG_RUNNING_AIRFLOW:
            assert variable not in raw["services"][name]["environment"], f"{name} needs no {variable}"
    required = set(REQUIRED_VAR.findall(COMPOSE.read_text()))
    assert required - set(env_example) == set(), f".env.example does not document {sorted(required - set(env_example))}"


def test_no_empty_or_placeholder_values(raw, compose):
    for name, service in raw["services"].items():
        for key, value in (service.get("environment") or {}).items():
            assert value not in (None, ""), f"{name}: {key} is empty"
            resolved = compose["services"][name]["environment"][key]
            assert not PLACEHOLDER.search(str(resolved)), f"{name}: {key}={resolved!r} is a placeholder"
            assert not PLACEHOLDER.search(str(value)), f"{name}: {key}={value!r} is a placeholder"


def test_every_interpolated_variable_is_known():
    """A variable compose reads but neither .env.example documents nor has a default is a typo."""
    text = COMPOSE.read_text().replace("$$", "")
    example = set(env_file_keys(ENV_EXAMPLE))
    for match in re.finditer(r"\$\{(\w+)(:?[-?+])?", text):
        name, op = match.group(1), match.group(2)
        assert name in example or op in (":-", "-"), f"docker-compose.yml reads {name}, which .env.example lacks"


# -- (3) healthchecks, restart, start order --------------------------------------------------------------

HEALTH_PROBES = {
    "airflow-apiserver": "curl --fail http://localhost:8080/api/v2/monitor/health",
    "airflow-scheduler": "curl --fail http://localhost:8974/health",
    "airflow-dag-processor": 'airflow jobs check --job-type DagProcessorJob --hostname "${HOSTNAME}"',
    "airflow-triggerer": 'airflow jobs check --job-type TriggererJob --hostname "${HOSTNAME}"',
    "airflow-worker": 'celery --app airflow.providers.celery.executors.celery_executor.app inspect ping -d "celery@${HOSTNAME}"',
}


def _probe(healthcheck: dict) -> str:
    test = healthcheck["test"]
    if isinstance(test, str):
        return test
    assert test[0] in ("CMD", "CMD-SHELL"), test
    return " ".join(test[1:])


def test_every_long_running_service_has_healthcheck_and_restart(compose):
    for name in LONG_RUNNING_AIRFLOW + OTHER_LONG_RUNNING:
        service = compose["services"][name]
        assert service.get("healthcheck", {}).get("test"), f"{name}: no healthcheck"
        assert not service["healthcheck"].get("disable"), f"{name}: healthcheck disabled"
        assert service.get("restart") == "always", f"{name}: restart: always"
    for name, probe in HEALTH_PROBES.items():
        assert _probe(compose["services"][name]["healthcheck"]) == probe, f"{name}: healthcheck"
    assert compose["services"]["airflow-scheduler"]["environment"]["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "True"
    assert "pg_isready" in _probe(compose["services"]["postgres"]["healthcheck"])
    assert "redis-cli ping" in _probe(compose["services"]["redis"]["healthcheck"])
    assert compose["services"][INIT].get("restart", "no") in ("no", "on-failure"), \
        "airflow-init runs once: restart: always would never let it complete"


def test_airflow_services_start_after_init_and_healthy_backends(compose):
    for name in LONG_RUNNING_AIRFLOW:
        depends = compose["services"][name].get("depends_on")
        assert isinstance(depends, dict), f"{name}: depends_on with conditions"
        assert depends.get(INIT, {}).get("condition") == "service_completed_successfully", \
            f"{name}: must wait for airflow-init to complete successfully"
        for backend in ("postgres", "redis"):
            assert depends.get(backend, {}).get("condition") == "service_healthy", f"{name}: {backend} healthy"
    depends = compose["services"][INIT].get("depends_on")
    for backend in ("postgres", "redis"):
        assert depends.get(backend, {}).get("condition") == "service_healthy", f"airflow-init: {backend} healthy"


def test_users_and_folder_ownership(raw, compose):
    for name in LONG_RUNNING_AIRFLOW:
        assert raw["services"][name]["user"] == "${AIRFLOW_UID:-50000}:0", f"{name}: user"
    assert raw["services"][INIT]["user"] in ("0:0", "0"), "airflow-init runs as root to create the folders"
    commands = script_commands(init_script(compose))
    chowned = {path for words in commands if words[:2] == ["chown", "-R"] for path in words[3:]
               if words[2] == f"{ENV['AIRFLOW_UID']}:0"}
    made = {path for words in commands if words[:2] == ["mkdir", "-p"] for path in words[2:]}
    targets = volume_targets(compose["services"][INIT])
    for folder in ("/opt/venue-risk/data", "/opt/venue-risk/reports", "/opt/venue-risk/outbox", "/opt/airflow/logs"):
        assert folder in targets, f"airflow-init does not mount {folder}"
        assert folder in chowned, f"airflow-init must chown -R AIRFLOW_UID:0 {folder}"
        assert folder in made, f"airflow-init must mkdir -p {folder}"
    passwords = Path(compose["services"][INIT]["environment"]["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    assert str(passwords.parent) in chowned, "airflow-init must hand the passwords file to AIRFLOW_UID"


def test_init_writes_the_passwords_file_and_refuses_stand_ins(compose, tmp_path):
    """Runs the Python part of airflow-init's script for real (Fernet check, passwords file)."""
    script = init_script(compose)
    body = re.search(r"<<\s*'PY'\n(.*?)\nPY\n", script, re.S)
    assert body, "airflow-init: the Python part as a <<'PY' heredoc"
    environment = dict(compose["services"][INIT]["environment"])
    passwords = tmp_path / "auth" / "passwords.json"
    environment["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = str(passwords)
    run = subprocess.run([sys.executable, "-c", body.group(1)], env={**environment, "PATH": os.environ["PATH"]},
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert json.loads(passwords.read_text()) == {"admin": ENV["AIRFLOW_ADMIN_PASSWORD"],
                                                  "risk": ENV["AIRFLOW_VIEWER_PASSWORD"]}
    assert stat.S_IMODE(passwords.stat().st_mode) == 0o600

    stand_ins = resolve(yaml.safe_load(COMPOSE.read_text()), env_file_keys(ENV_EXAMPLE))
    environment = dict(stand_ins["services"][INIT]["environment"])
    environment["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = str(tmp_path / "other.json")
    run = subprocess.run([sys.executable, "-c", body.group(1)], env={**environment, "PATH": os.environ["PATH"]},
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0, "airflow-init accepted the .env.example stand-ins"
    for name in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__FERNET_KEY", "POSTGRES_PASSWORD",
                 "AIRFLOW_ADMIN_PASSWORD"):
        assert name in run.stderr
    assert not (tmp_path / "other.json").exists()


# -- (4) paused at creation --------------------------------------------------------------------------------

def test_dags_are_paused_at_creation(raw):
    for name in AIRFLOW_SERVICES:
        assert raw["services"][name]["environment"]["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "True"
    assert stack_env()["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "True"


# -- (5) the image: the lock only, no test packages -------------------------------------------------------

def test_dockerfile_installs_from_the_lock_only():
    installs = pip_installs()
    assert installs, "the Dockerfile installs nothing with pip"
    requirement_files = set()
    for words in installs:
        i = 2
        while i < len(words):
            word = words[i]
            if word in ("-r", "--requirement"):
                requirement_files.add(words[i + 1])
                i += 2
                continue
            if word in ("-c", "--constraint"):
                assert Path(words[i + 1]).name == "requirements.lock", f"constraint {words[i + 1]}"
                i += 2
                continue
            if word.startswith(("--requirement=", "--constraint=")):
                raise AssertionError(f"write {word.split('=')[0]} FILE: {shlex.join(words)}")
            if word.startswith("-"):
                assert word in ("--no-cache-dir", "--no-deps", "--no-build-isolation", "--quiet", "-q",
                                "--no-compile", "--progress-bar=off", "--disable-pip-version-check"), \
                    f"unexpected pip option {word} in: {shlex.join(words)}"
                i += 1
                continue
            assert word in ("/opt/venue-risk", "/opt/venue-risk/", "."), \
                f"pip installs {word!r}, which is not from requirements.lock: {shlex.join(words)}"
            i += 1
        assert any(w in ("-c", "--constraint") for w in words), f"no --constraint requirements.lock: {shlex.join(words)}"
    # -r only the filtered lock (requirements.lock itself pins the test packages too)
    assert {Path(path).name for path in requirement_files} == {"requirements.image.txt"}, \
        f"pip install -r {sorted(requirement_files)}: only -r requirements.image.txt, the lock less the test packages"


def test_image_is_the_locks_airflow_and_python():
    base = [args for instruction, args in dockerfile_instructions() if instruction == "FROM"]
    assert len(base) == 1, base
    airflow = lock_pins()["apache-airflow"]
    image, _, tag = base[0].partition(":")
    assert image == "apache/airflow"
    assert re.fullmatch(rf"(slim-)?{re.escape(airflow)}-python3\.11", tag), \
        f"FROM {base[0]}: the lock pins apache-airflow=={airflow}, the project Python 3.11"


def test_test_only_packages_are_the_locks_exclusive_test_deps():
    listed = set(dockerfile_arg("TEST_ONLY_PACKAGES").split())
    assert TEST_PACKAGES <= listed, f"TEST_ONLY_PACKAGES lacks {sorted(TEST_PACKAGES - listed)}"
    parents, excluded = lock_parents(), set(TEST_PACKAGES)
    while True:  # what only the test packages pull in
        more = {pkg for pkg, via in parents.items() if via and pkg not in excluded and via <= excluded}
        if not more:
            break
        excluded |= more
    assert listed == excluded, (f"TEST_ONLY_PACKAGES should be {sorted(excluded)} "
                                f"(missing {sorted(excluded - listed)}, not test-only {sorted(listed - excluded)})")


def test_dockerfile_filter_leaves_exactly_the_runtime_pins(tmp_path):
    """Runs the Dockerfile's filter RUN (the one writing requirements.image.txt) with bash, the
    image's shell options."""
    filters = [args for instruction, args in dockerfile_instructions()
               if instruction == "RUN" and "requirements.image.txt" in args and "pip install" not in args]
    assert len(filters) == 1, "one RUN writes requirements.image.txt"
    home = tmp_path / "opt-venue-risk"
    home.mkdir()
    # the lock, plus decoys whose names begin like test packages: the filter must keep them
    decoys = {"pytest-decoy", "hypothesis-decoy", "pypdf2-decoy"}
    (home / "requirements.lock").write_text(LOCK.read_text() + "".join(f"{d}==1.0\n" for d in sorted(decoys)))
    script = filters[0].replace("/opt/venue-risk", str(home))
    listed = dockerfile_arg("TEST_ONLY_PACKAGES")
    run = subprocess.run(["bash", "-o", "pipefail", "-o", "errexit", "-o", "nounset", "-c", script],
                         env={"PATH": os.environ["PATH"], "TEST_ONLY_PACKAGES": listed},
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    kept = {m.group(1).lower() for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==", (home / "requirements.image.txt").read_text(), re.M)}
    assert kept == (set(lock_pins()) | decoys) - set(listed.split())
    assert not kept & TEST_PACKAGES
    for runtime in ("apache-airflow", "apache-airflow-providers-celery", "apache-airflow-providers-postgres",
                    "celery", "kombu", "psycopg2-binary", "asyncpg", "pluggy", "pygments"):
        assert runtime in kept, f"{runtime} filtered out of the image"
    # a listed package that is not in the lock fails the build
    run = subprocess.run(["bash", "-o", "errexit", "-o", "nounset", "-c", script],
                         env={"PATH": os.environ["PATH"], "TEST_ONLY_PACKAGES": listed + " not-a-locked-package"},
                         capture_output=True, text=True, timeout=30)
    assert run.returncode != 0 and "not-a-locked-package" in run.stderr


def test_dockerignore_keeps_secrets_and_bulk_out_and_sources_in():
    ignored = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for entry in (".venv", "data", "reports", "outbox", ".git", "tests", "bench", ".env"):
        assert entry in ignored, f".dockerignore: {entry}"
    assert any(entry.startswith(".airflow") for entry in ignored), ".dockerignore: .airflow*"
    for instruction, args in dockerfile_instructions():
        if instruction == "COPY":
            for source in [w for w in shlex.split(args) if not w.startswith("--")][:-1]:
                top = source.split("/")[0]
                assert top not in ignored and (PROJECT / source).exists(), f"COPY {source}: ignored or missing"


# -- make compose-env ------------------------------------------------------------------------------------

def test_make_compose_env_writes_every_variable_once(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    shutil.copy(MAKEFILE, tmp_path / "Makefile")
    # not the make running this test's flags (jobserver, -n, overrides)
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    run = subprocess.run(["make", "-s", "compose-env", "PYTHON=" + sys.executable], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    env_file = tmp_path / ".env"
    written = env_file_keys(env_file)
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert set(written) == set(env_file_keys(ENV_EXAMPLE)), "make compose-env and .env.example differ"
    assert set(REQUIRED_VAR.findall(COMPOSE.read_text())) <= set(written)
    assert written["AIRFLOW_UID"] == str(os.getuid())
    assert written["VENUE_RISK_START_DATE"] == "2026-11-01"
    from cryptography.fernet import Fernet
    Fernet(written["AIRFLOW_FERNET_KEY"].encode())
    secrets = [v for k, v in written.items() if k not in ("AIRFLOW_UID", "VENUE_RISK_START_DATE")]
    assert len(set(secrets)) == len(secrets) and all(len(v) >= 20 and not PLACEHOLDER.search(v) for v in secrets)
    before = env_file.read_text()
    run = subprocess.run(["make", "-s", "compose-env", "PYTHON=" + sys.executable], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "exists" in run.stdout
    assert env_file.read_text() == before, "make compose-env overwrote .env"


# -- (6) docker compose config ---------------------------------------------------------------------------

def _docker_env() -> dict[str, str]:
    """A clean environment: compose lets shell variables override the env file."""
    keep = ("PATH", "HOME", "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CONTEXT", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY")
    return {key: os.environ[key] for key in keep if key in os.environ}


def _docker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], cwd=PROJECT, env=_docker_env(), capture_output=True, text=True,
                          timeout=60)


def _need_compose_plugin() -> None:
    if shutil.which("docker") is None:
        pytest.skip("no docker CLI: docker compose config not run")
    version = _docker("compose", "version")
    if version.returncode != 0:
        said = (version.stderr or version.stdout).strip().splitlines()
        pytest.skip("the docker CLI has no compose plugin: docker compose config not run"
                    + (f" ({said[0]})" if said else ""))


def test_docker_compose_config_with_engine():
    if shutil.which("docker") is None or _docker("info").returncode != 0:
        pytest.skip("no Docker engine: docker compose config not run")
    _need_compose_plugin()
    env_file = ".env" if (PROJECT / ".env").exists() else ".env.example"
    run = _docker("compose", "--env-file", env_file, "config", "-q")
    assert run.returncode == 0, run.stderr


def test_docker_compose_config_with_env_example_client_only():
    _need_compose_plugin()
    run = _docker("compose", "--env-file", ".env.example", "config", "-q")
    assert run.returncode == 0, run.stderr
    # and without .env's variables it refuses, saying what to do
    run = _docker("compose", "--env-file", "/dev/null", "config", "-q")
    assert run.returncode != 0 and "make compose-env" in run.stderr
