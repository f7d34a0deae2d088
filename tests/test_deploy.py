"""The deployment files, checked statically (no Docker engine here): the compose services,
ports and volumes, that every variable they set is one the server reads and the README
documents, and that the Dockerfiles install what scripts/setup.sh installs."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CODE = "".join(p.read_text() for p in (ROOT / "backend" / "circuit_debugger").rglob("*.py"))


def dockerfile(name: str) -> str:
    return (ROOT / "docker" / name).read_text()


def split(volume: str) -> tuple[str, str]:
    """'HOST:CONTAINER[:ro]' -> (HOST, CONTAINER); HOST may itself hold ':' (${VAR:-default})."""
    volume = re.sub(r":(ro|rw)$", "", volume)
    host, container = volume.rsplit(":", 1)
    return host, container


def test_compose_services_ports_volumes():
    c = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert set(c["services"]) == {"backend", "frontend", "postgres"}
    be, fe = c["services"]["backend"], c["services"]["frontend"]
    assert be["build"]["dockerfile"] == "docker/backend.Dockerfile" and fe["build"]["dockerfile"] == "docker/frontend.Dockerfile"
    assert be["build"]["context"] == fe["build"]["context"] == "."
    assert "8000" in be["expose"] and any(p.endswith(":80") for p in fe["ports"])
    assert fe["depends_on"] == ["backend"]
    mounts = {split(v)[1]: v for v in be["volumes"]}
    assert {"/app/autoencoders", "/app/explanations", "/models"} <= set(mounts)


def test_compose_replicas_share_one_postgres_with_a_volume():
    c = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    be, pg = c["services"]["backend"], c["services"]["postgres"]
    assert be["deploy"]["replicas"] == "${CD_REPLICAS:-2}" and "container_name" not in be and "ports" not in be
    assert pg["image"].startswith("postgres:") and "pgdata:/var/lib/postgresql/data" in pg["volumes"]
    assert "pgdata" in c["volumes"] and "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert be["depends_on"]["postgres"]["condition"] == "service_healthy"
    url = be["environment"]["CD_DATABASE"]  # every replica: the same database, on the postgres service
    env = pg["environment"]
    assert url.startswith(f"postgresql://{env['POSTGRES_USER']}:") and url.endswith(f"@postgres:5432/{env['POSTGRES_DB']}")
    assert "${CD_PG_PASSWORD:-circuit-debugger}" in url and env["POSTGRES_PASSWORD"] == "${CD_PG_PASSWORD:-circuit-debugger}"
    from sqlalchemy.engine import make_url

    u = make_url(url.replace("${CD_PG_PASSWORD:-circuit-debugger}", "pw"))
    assert (u.drivername, u.host, u.port, u.database) == ("postgresql", "postgres", 5432, "circuit_debugger")
    for host in (split(v)[0] for v in be["volumes"]):
        if host.startswith("./"):
            assert (ROOT / host[2:]).is_dir() or host == "./models", host


SAMPLE = {"CD_HOST": "0.0.0.0", "CD_PORT": "9123", "CD_MODELS": "/models/a", "CD_AUTOENCODERS": "a=/x",
          "CD_CORS_ORIGINS": "http://lab:1", "CD_MAX_TOKENS": "77", "CD_DEVICE": "cuda", "CD_DTYPE": "bfloat16",
          "CD_SHARE_DB": "/data/x.sqlite", "CD_MAX_PENDING": "9", "CD_DATABASE": "postgresql://u@h/db",
          "CD_WORKERS": "3", "CD_JOB_WORKERS": "2", "CD_BATCH_SIZE": "16", "CD_JOB_TIME_LIMIT": "60",
          "CD_RAY": "auto", "CD_FORWARDED_ALLOW_IPS": "10.1.2.3"}


def test_every_variable_is_read_by_the_server_and_documented(monkeypatch):
    from circuit_debugger.cli import parser, settings_from

    c = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = c["services"]["backend"]["environment"]

    def parsed():
        ap = parser()
        a = ap.parse_args(["serve"])
        return vars(a), vars(settings_from(ap, a))

    for name in list(env) + [n for n in SAMPLE if n not in env]:
        monkeypatch.delenv(name, raising=False)
    base = parsed()
    for name in env:
        assert name in README, f"{name} is not documented in the README"
        if name.startswith("CD_LLM_"):  # read by the explainer when it is called
            assert f'"{name}"' in CODE, f"{name} is set by compose but the server never reads it"
            continue
        monkeypatch.setenv(name, SAMPLE[name])
        assert parsed() != base, f"{name} is set by compose but changes nothing in the server"
        monkeypatch.delenv(name)
    for name in re.findall(r"\$\{(CD_[A-Z_]+)", (ROOT / "docker-compose.yml").read_text()):
        assert name in README, f"{name} (compose) is not documented in the README"


def test_dockerfiles_install_what_setup_installs():
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    torch_pin = re.search(r'"(torch==[\d.]+)"', setup).group(1)
    be = dockerfile("backend.Dockerfile")
    assert f'"{torch_pin}"' in be, "the image must pin the same torch as setup.sh"
    assert be.index(torch_pin) < be.index('-e "backend"'), "torch first, as setup.sh does"
    assert '-e "backend[test]"' in setup
    for src in re.findall(r"^COPY (\S+)/ ", be, re.M):
        assert (ROOT / src).is_dir(), src
    fe = dockerfile("frontend.Dockerfile")
    assert "npm ci" in fe and "npm run build" in fe and "npm ci" in setup and "npm run --silent build" in setup
    assert "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1" in fe and "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1" in setup
    assert re.search(r"FROM node:(\d+)", fe).group(1) == "20"


def test_nginx_proxies_the_api_and_serves_the_app():
    conf = (ROOT / "docker" / "nginx.conf").read_text()
    assert re.search(r"upstream backend_replicas \{\s*server backend:8000[ ;]", conf)  # every replica of the service
    assert re.search(r"location /api/ \{\s*proxy_pass http://backend_replicas;", conf)
    assert "try_files $uri /index.html;" in conf  # /s/<id> short links open the app
    assert "docker/nginx.conf" in dockerfile("frontend.Dockerfile")


def test_backends_believe_x_forwarded_for_from_nginx_only():
    """nginx has a fixed address on the compose network, sets X-Forwarded-For to the address it
    saw, and that address (only) is what the backends trust (tests/test_forwarded.py: the flag)."""
    import ipaddress

    c = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    fe, be = c["services"]["frontend"], c["services"]["backend"]
    proxy = fe["networks"]["cd"]["ipv4_address"]
    subnet = c["networks"]["cd"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_address(proxy) in ipaddress.ip_network(subnet)
    assert be["environment"]["CD_FORWARDED_ALLOW_IPS"] == proxy
    assert be["networks"] == ["cd"] and c["services"]["postgres"]["networks"] == ["cd"]
    conf = (ROOT / "docker" / "nginx.conf").read_text()
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in conf  # not appended to what the client sent
    from circuit_debugger.cli import parser
    from circuit_debugger.server.cli_security import proxy_options

    ap = parser()
    assert proxy_options(ap, ap.parse_args(["serve", "--forwarded-allow-ips", proxy]))["forwarded_allow_ips"] == [proxy]


def test_gpu_override_selects_cuda():
    g = yaml.safe_load((ROOT / "docker-compose.gpu.yml").read_text())
    be = g["services"]["backend"]
    assert be["environment"]["CD_DEVICE"] == "cuda"
    assert be["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
