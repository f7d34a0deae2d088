import pytest

from circuit_debugger.errors import UserError
from circuit_debugger.nodes import NodeId, Shape, activation_hook, parse_node, validate

SHAPE = Shape(n_layers=2, n_heads=4, d_mlp=128, d_model=32, d_head=8)


@pytest.mark.parametrize("text", ["L1.H3", "L0.N117", "L1.MLP", "L0.ATTN", "L2.RESID", "EMB", "POS", "L1.T300",
                                  "L0.S5", "L1.H3@7", "POS@0", "L0.MLP@12"])
def test_round_trip(text):
    assert str(parse_node(text)) == text


@pytest.mark.parametrize("text", ["", "L1", "H3", "L1.H", "l1.h3", "L1.H3@", "L1.X3", "L-1.H2", "EMB.1", None])
def test_bad_ids(text):
    with pytest.raises(UserError, match="unknown node id"):
        parse_node(text)


@pytest.mark.parametrize("text,msg", [("L2.H0", "layer 2 out of range"), ("L0.H4", "head 4 out of range"),
                                      ("L1.N128", "neuron 128 out of range"), ("L3.RESID", "layer 3"),
                                      ("L0.T1", "no transcoder"), ("L0.S1", "no sae")])
def test_validation(text, msg):
    with pytest.raises(UserError, match=msg):
        validate(parse_node(text), SHAPE)


def test_position_validation():
    with pytest.raises(UserError, match="position 9 out of range"):
        validate(parse_node("L0.H1@9"), SHAPE, seq_len=9)


def test_hook_names_live_in_one_place():
    assert activation_hook(parse_node("L1.H3"), 2) == "blocks.1.attn.hook_z"
    assert activation_hook(parse_node("L0.N5"), 2) == "blocks.0.mlp.hook_post"
    assert activation_hook(parse_node("L1.ATTN"), 2) == "blocks.1.hook_attn_out"
    assert activation_hook(parse_node("L2.RESID"), 2) == "blocks.1.hook_resid_post"
    assert activation_hook(parse_node("L0.RESID"), 2) == "blocks.0.hook_resid_pre"
    assert activation_hook(NodeId("embed"), 2) == "hook_embed"
