"""The embedded Llama-family model (issue 14) and corpus v2: the model loads by spec 'llama', is
what the engine's architecture description says a Llama is (GQA, rotary, RMSNorm, gated), its
decomposition sums to the logit difference computed by plain HuggingFace, and it prefers the
indirect object on held-out IOI phrasings; the training script builds and resumes it
deterministically, corpus v2's held-out families never occur in its training, and corpus v1 and v2
still reproduce the earlier tokenizers (corpus v3's checks: test_corpus_v3.py)."""

import json
import random
import re

import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT

LLAMA_DIR = ROOT / "backend/circuit_debugger/models/llama"
IOI = "Later Mary and John walked to the park, and John threw a book to"  # a held-out family


@pytest.fixture(scope="module")
def llama():
    from circuit_debugger.engine import Debugger
    from circuit_debugger.loading import load_model

    m = load_model("llama")
    return m, Debugger([m], cache_size=4)


@pytest.fixture(scope="module")
def hf():
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(LLAMA_DIR).eval()


def test_llama_is_a_llama(llama):
    m, _ = llama
    a = m.describe()["architecture"]
    assert a["family"] == "llama"
    assert (a["norm"], a["positions"], a["rotary_style"], a["mlp"]) == ("rmsnorm", "rotary", "half", "gated")
    assert (a["attention"], a["n_heads"], a["n_kv_heads"]) == ("GQA", 4, 2)
    assert m.shape.n_layers == 3


def test_sum_check_and_logit_diff_match_huggingface(llama, hf):
    m, dbg = llama
    r = dbg.attribute("llama", IOI, " Mary", " John", top_k=None)
    ids = torch.tensor([m.tokenize(IOI)])
    with torch.no_grad():
        last = hf(ids).logits[0, -1]
    tok = m.codec
    ref = float(last[tok.output_token(" Mary")] - last[tok.output_token(" John")])
    assert abs(r["value"] - ref) <= 1e-4 * max(1.0, abs(ref)), (r["value"], ref)
    assert abs(r["sum_check"]["residual"]) <= 1e-5 * max(1.0, abs(r["value"])), r["sum_check"]
    heads = [n for n in r["nodes"] if n["kind"] == "head"]
    assert {n["id"] for n in heads} == {f"L{l}.H{h}" for l in range(3) for h in range(4)}


# Held-out IOI families (intros and verbs no IOI training example has), both name orders. Written
# before the corpus v2 model was trained; the corpus v3 model's card measures logit(IO) > logit(S) on
# 0.993 of 400 such prompts (top-1 0.983): these six check that measured preference here.
HELDOUT = [
    ("Before Anna and Tom came to the library, Tom lent a pen to", " Anna", " Tom"),
    ("Before Anna and Tom came to the library, Anna lent a pen to", " Tom", " Anna"),
    ("During the holiday, Grace and Peter camped at the farm. Peter presented a cake to", " Grace", " Peter"),
    ("Early one evening Lucy and Mark drove to the beach. Lucy forwarded the letter to", " Mark", " Lucy"),
    ("Sarah and David were waiting outside the museum. David slipped a ticket to", " Sarah", " David"),
    ("Having searched the station, Oscar and Ruth rested. Ruth carried the bag over to", " Oscar", " Ruth"),
]


def test_prefers_the_indirect_object_on_held_out_phrasings(hf):
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(LLAMA_DIR)
    for prompt, io, s in HELDOUT:
        ids = torch.tensor([[tok.bos_token_id] + tok.encode(prompt, add_special_tokens=False)])
        with torch.no_grad():
            last = hf(ids).logits[0, -1]
        a, b = (tok.encode(x, add_special_tokens=False)[0] for x in (io, s))
        assert last[a] > last[b], (prompt, float(last[a] - last[b]))


def test_llama_training_builds_a_llama_and_resumes_deterministically(tmp_path):
    from circuit_debugger.default_model.train import main

    common = ["--arch", "llama", "--batch", "4", "--every", "3", "--threads", "1"]
    main(["--steps", "6", "--work", str(tmp_path / "w1"), "--out", str(tmp_path / "o1")] + common)
    main(["--steps", "3", "--work", str(tmp_path / "w2"), "--out", str(tmp_path / "o2")] + common)
    main(["--steps", "6", "--work", str(tmp_path / "w2"), "--out", str(tmp_path / "o2")] + common)
    cfg = json.loads((tmp_path / "o1" / "config.json").read_text())
    assert cfg["model_type"] == "llama" and cfg["num_key_value_heads"] == 2
    info = json.loads((tmp_path / "o1" / "training.json").read_text())
    assert (info["arch"], info["corpus"], info["steps"]) == ("llama", "v3", 6)
    a, b = load_file(str(tmp_path / "o1" / "model.safetensors")), load_file(str(tmp_path / "o2" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(SystemExit):  # a work dir of another run is refused, not silently mixed
        main(["--steps", "9", "--work", str(tmp_path / "w1"), "--out", str(tmp_path / "o3"), "--arch", "gpt2"])


def _words(text: str) -> set:
    return set(re.findall(r"[A-Za-z]+", re.sub(r"\{\w+\}", "", text)))


def test_held_out_families_share_no_intro_verb_or_frame_with_training():
    from circuit_debugger.default_model import corpus_v2 as C2

    rng = random.Random(5)
    train_pairs, _ = C2.name_pairs()
    seen = set()
    for _ in range(5000):
        seen |= _words(C2.sample(rng, train_pairs).prefix)
    function_words = {"The", "a", "and", "at", "from", "in", "last", "the", "to", "was", "were"}
    for family in (C2.IOI_HELDOUT_INTROS, C2.IOI_HELDOUT_ACTIONS, C2.GT_HELDOUT_FRAMES):
        for t in family:
            content = _words(t) - function_words
            assert content and not content & seen, (t, content & seen)
    assert not set(C2.GT_HELDOUT_FRAMES) & set(C2.GT_FRAMES)


# sha256 of the sorted vocabularies of the tokenizers shipped with the corpus v1 default GPT-2 and the
# corpus v2 llama (models/*/tokenizer.json until both were retrained on corpus v3)
V1_VOCAB = "77ab8c7ed0bcc4185fbacfb8f75fd89e96293c8c2eb529901d65224ebeae36a9"
V2_VOCAB = "5222bec485e407b299b64084de984e95ca794ac1934ec6595f9d903a3b8f7f8b"


def test_corpus_v1_and_v2_still_reproduce_the_earlier_tokenizers():
    import hashlib

    from circuit_debugger.default_model.tokenizer import train_tokenizer

    for corpus, want in (("v1", V1_VOCAB), ("v2", V2_VOCAB)):
        vocab = train_tokenizer(corpus=corpus).backend_tokenizer.get_vocab()
        assert hashlib.sha256(json.dumps(sorted(vocab.items())).encode()).hexdigest() == want, corpus
    shipped = json.loads((LLAMA_DIR / "tokenizer.json").read_text())["model"]["vocab"]
    assert train_tokenizer(corpus="v3").backend_tokenizer.get_vocab() == shipped | {"<|endoftext|>": 0}
