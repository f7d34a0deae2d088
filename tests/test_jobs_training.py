"""Autoencoder training as a job: progress in steps, cancel part-way, submit again, and the
training continues from its checkpoint to the same weights, bit for bit, as one uninterrupted
run; the metrics it reports (CE loss with the reconstruction in place of the MLP output vs
zero-ablation, variance explained, L0) equal ones computed on a plain HuggingFace model with
torch hooks; the output folder is the server's."""


import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import load_file

from circuit_debugger.engine import Debugger
from helpers import job_client as client, paced_executor, wait_job as wait
from circuit_debugger.jobs import training
from circuit_debugger.server.app import Settings, create_app

REQ = {"model": "tiny", "kind": "transcoder", "layers": [0, 1], "latents": 24, "steps": 48, "batch": 4,
       "corpus": "c.txt", "ctx": 8, "tokens": 600, "eval_tokens": 150, "seed": 3}


@pytest.fixture(scope="module")
def executor(tiny_dir):
    ex = paced_executor({"tiny": {"name": "tiny", "spec": str(tiny_dir)}})  # a cancel lands mid-job
    yield ex
    ex.close()






def weights(root, name):
    (folder,) = (root / "jobs").iterdir()
    return load_file(str(folder / "autoencoders" / name / "sae_weights.safetensors"))


def hf_metrics(hf, w, ids, layer, bos):
    """CE clean / with the transcoder's reconstruction as the MLP output / MLP zeroed, L0 and
    variance explained, on the HF model with forward hooks (no project code)."""
    blk = hf.transformer.h[layer]
    seen = {}

    def normalized(mod, args):
        x = args[0]
        seen["x"] = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + mod.eps)

    def recon(x):
        return torch.relu(x @ w["W_enc"] + w["b_enc"]) @ w["W_dec"] + w["b_dec"]

    def ce(mode):
        hooks = [blk.ln_2.register_forward_pre_hook(normalized)]
        if mode == "spliced":
            hooks.append(blk.mlp.register_forward_hook(lambda m, a, out: recon(seen["x"])))
        elif mode == "zero":
            hooks.append(blk.mlp.register_forward_hook(lambda m, a, out: torch.zeros_like(out)))
        elif mode == "capture":
            hooks.append(blk.mlp.register_forward_hook(lambda m, a, out: seen.__setitem__("y", out)))
        try:
            with torch.no_grad():
                logits = hf(ids).logits
        finally:
            for h in hooks:
                h.remove()
        nll = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                                                reduction="none")
        return float(nll[(ids[:, 1:] != bos).reshape(-1)].mean())

    out = {"ce_clean": ce("clean"), "ce_spliced": ce("spliced"), "ce_zero_ablated": ce("zero")}
    ce("capture")
    keep = (ids != bos).reshape(-1)
    x, y = seen["x"].reshape(-1, x_dim := seen["x"].shape[-1])[keep], seen["y"].reshape(-1, x_dim)[keep]
    acts = torch.relu(x @ w["W_enc"] + w["b_enc"])
    out["l0"] = float((acts > 0).sum()) / x.shape[0]
    out["fve"] = 1 - float(((y - (acts @ w["W_dec"] + w["b_dec"])) ** 2).sum()) / float(((y - y.mean(0)) ** 2).sum())
    return out


def test_cancelled_training_resumes_to_identical_weights(tiny, hf_model, executor, tmp_path, monkeypatch):
    monkeypatch.setattr(training, "CHUNK_STEPS", 3)  # 16 chunks per layer
    a = client(tiny, executor, tmp_path / "a")
    ref = wait(a, a.post("/api/jobs/autoencoders/train", json=REQ).json()["id"])
    assert ref["status"] == "done", ref
    assert ref["kind"] == "train_autoencoders" and ref["done"] == ref["total"] == 2 * 48 + 1

    b = client(tiny, executor, tmp_path / "b")
    jid = b.post("/api/jobs/autoencoders/train", json=REQ).json()["id"]
    twice = b.post("/api/jobs/autoencoders/train", json=REQ)  # one writer per job folder
    assert twice.status_code == 409 and jid in twice.json()["detail"], twice.text
    wait(b, jid, until=("running",), cond=lambda j: j["done"] >= 6)
    b.post(f"/api/jobs/{jid}/cancel")
    cut = wait(b, jid)
    assert cut["status"] == "cancelled" and 6 <= cut["done"] < 2 * 48, cut
    again = b.post("/api/jobs/autoencoders/train", json=REQ).json()
    assert again["id"] != jid
    seen = wait(b, again["id"], until=("running", "done"), cond=lambda j: j["done"] > 0)
    assert seen["done"] >= cut["done"] - cut["done"] % 3  # continued from the last checkpoint, not from zero
    done = wait(b, again["id"])
    assert done["status"] == "done", done
    same = ("autoencoders",)  # the folder's name hashes the corpus path, which differs between the two roots
    assert {k: v for k, v in done["result"].items() if k not in same} == \
        {k: v for k, v in ref["result"].items() if k not in same}  # the metrics too, to the last bit

    for name in ("tc0", "tc1"):
        wa, wb = weights(tmp_path / "a", name), weights(tmp_path / "b", name)
        assert wa.keys() == wb.keys() == {"W_enc", "b_enc", "W_dec", "b_dec"}
        for k in wa:
            assert torch.equal(wa[k], wb[k]), (name, k)
        init = torch.randn(32, 24, generator=torch.Generator().manual_seed(3 + int(name[-1]))) / 32 ** 0.5
        assert not torch.allclose(wa["W_enc"], init)  # it trained

    # the reported metrics against plain HF hooks on the same held-out tokens
    from circuit_debugger.explanations.build import CorpusSpec, corpus

    (folder,) = (tmp_path / "a" / "jobs").iterdir()
    ids = corpus(tiny, REQ["eval_tokens"], REQ["seed"] + 2000, CorpusSpec(str(tmp_path / "a" / "corpora" / "c.txt"),
                                                                         "text", REQ["ctx"]), split="held")
    assert len(ids) <= 32  # one metrics batch: a plain token mean
    for row in ref["result"]["metrics"]:
        want = hf_metrics(hf_model, weights(tmp_path / "a", row["name"]), ids, row["layer"], tiny.codec.bos_id)
        for k, v in want.items():
            assert row[k] == pytest.approx(v, rel=1e-4, abs=1e-5), (row["name"], k, row[k], v)
        assert row["ce_zero_ablated"] != row["ce_clean"]
        assert row["ce_loss_recovered"] == pytest.approx(
            (want["ce_zero_ablated"] - want["ce_spliced"]) / (want["ce_zero_ablated"] - want["ce_clean"]), rel=1e-3)
    assert ref["result"]["autoencoders"] == f"{folder.name}/autoencoders"

    # the folder loads as dictionaries of the model (SAELens layout)
    from circuit_debugger.autoencoders import load_onto
    from circuit_debugger.loading import load_model

    m = load_model(str(tiny.source), name="tiny2")
    assert load_onto(m, folder / "autoencoders") == {}
    assert sorted(m.autoencoders.transcoders) == [0, 1]


def test_bad_training_requests_are_4xx(tiny, executor, tmp_path):
    c = client(tiny, executor, tmp_path)
    for bad, status, words in (({"layers": [2]}, 422, "layers 0..1"), ({"kind": "topk"}, 422, "kind"),
                               ({"corpus": "../c.txt"}, 422, "corpora folder"), ({"out": "/tmp/x"}, 422, "out"),
                               ({"steps": 0}, 422, "steps"), ({"latents": "8"}, 422, "latents")):
        r = c.post("/api/jobs/autoencoders/train", json={**REQ, **bad})
        assert r.status_code == status and words in r.text, (bad, r.text)
    off = TestClient(create_app(Settings(models=[], serve_frontend=False, job_executor=executor),
                                debugger=Debugger([tiny]), failed={}), raise_server_exceptions=False)
    r = off.post("/api/jobs/autoencoders/train", json=REQ)
    assert r.status_code == 409 and "--mining-dir" in r.json()["detail"]


def test_mcp_tools_submit_and_poll_jobs(tiny, executor, tmp_path):
    """Each job tool runs its HTTP route's endpoint: the same job, the same 4xx text; submitting
    and cancelling are opt-in writes, polling is not."""
    import anyio

    from circuit_debugger.server.mcp_tools import McpTools

    c = client(tiny, executor, tmp_path)
    assert {"train_autoencoders", "mine_explanations", "cancel_job"}.isdisjoint(McpTools(c.app).entries)
    assert "get_job" in McpTools(c.app).entries
    tools = McpTools(c.app, writes=True)
    small = {**REQ, "steps": 6, "layers": [1]}
    bad = {**small, "layers": [7]}

    async def main():
        sub = await tools.call("train_autoencoders", small)
        refused = await tools.call("train_autoencoders", bad)
        return sub, refused

    sub, refused = anyio.run(main)
    job = sub.structured_content
    assert not sub.is_error and job["kind"] == "train_autoencoders" and job["status"] in ("queued", "running"), job
    http = c.post("/api/jobs/autoencoders/train", json=bad)
    assert refused.is_error and refused.structured_content == {"status": 422, "detail": http.json()["detail"]}
    again = c.post("/api/jobs/autoencoders/train", json=small)  # the tool's job holds the folder
    assert again.status_code == 409 and job["id"] in again.json()["detail"]
    done = wait(c, job["id"])
    polled = anyio.run(tools.call, "get_job", {"job_id": job["id"]}).structured_content
    assert polled["status"] == "done" and polled["done"] == polled["total"] == 7, polled
    (row,) = polled["result"]["metrics"]
    assert row["ce_loss_recovered"] == round(done["result"]["metrics"][0]["ce_loss_recovered"], 3)
