"""The audit configs the audit tests run: a tiny one for the fast lane, the full demo data set for the slow."""

CONFIG = """
[tool.privaudit]
seed = 0
data = "{data}"
cache_dir = "{cache}"

[tool.privaudit.train]
arch = "cnn"
epochs = {epochs}
{dp}

[tool.privaudit.mia]
attack = "rmia"
shadows = {shadows}
workers = 1

[tool.privaudit.canary]
template = "{template}"
insert = 2
repeat = [1, 8]
audit_canaries = 20
gradient_canaries = 2000
modiva_steps = {modiva_steps}
modiva_restarts = 4
references = 1

[tool.privaudit.thresholds]
max_auc = 0.6
max_empirical_epsilon = 1.5
max_extraction_rate = 0.5
"""
TINY = {"epochs": 4, "shadows": 2, "template": "my pin is {{digit}} {{digit}}", "modiva_steps": 50}
# The full-size run (slow lane): the whole built-in demo data set, four shadows, four-digit secrets.
FULL = {
    "epochs": 15,
    "shadows": 4,
    "template": "my pin code is {{digit}} {{digit}} {{digit}} {{digit}}",
    "modiva_steps": 200,
}


def write_config(folder, dp: bool, data=None, name="privaudit.toml", size=None):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    tiny = size is None
    size = dict(size or TINY)
    dp_table = "dp = { target_epsilon = 1.0 }"
    if dp and tiny:
        # Fewer epochs and a given noise multiplier (no calibration): the gate's verdict is the same.
        size["epochs"] = 3
        dp_table = "dp = { noise_multiplier = 2.0 }"
    body = CONFIG.format(cache=folder / "cache", dp=dp_table if dp else "", data=data or "train.csv", **size)
    if dp and tiny:  # the leaking model's audit runs the shadow models; this one the shadow-free attacks
        body = body.replace('attack = "rmia"\nshadows = 2', 'attack = "loss"\nshadows = 0')
    if data is None:  # the built-in demo data set
        body = body.replace('data = "train.csv"\n', "")
    if name == "pyproject.toml":
        body = '[project]\nname = "x"\n' + body
    path.write_text(body)
    return path


def audit_via_cli(run_cli, folder, dp: bool, data):
    """The tiny audit of `data` written to `folder` and run as CI would: ((code, out, err), folder)."""
    config = write_config(folder, dp, data)
    report, junit = folder / "report", folder / "junit.xml"
    result = run_cli("audit", "--config", config, "--report", report, "--format", "junit", "--output", junit)
    return result, folder
