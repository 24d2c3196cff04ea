"""Acronyms mined from paper text, and questions turned into expanded queries and comparison sides."""

from __future__ import annotations

import pytest

from rag.retrieve.query import comparison_sides, definitions, mine_acronyms, parse_query
from rag.types import Chunk


def chunk(text: str, *, refs: bool = False, ordinal: int = 0) -> Chunk:
    return Chunk(source_id="arxiv:2305.13245", ordinal=ordinal, text=text, page_start=1, page_end=1,
                 is_references=refs)


REALISTIC = [
    "We propose grouped-query attention (GQA), a generalization of multi-query attention (MQA) which uses an "
    "intermediate number of key-value heads.",
    "Sparse Mixture-of-Experts (MoE) models scale the parameter count at constant compute.",
    "Recent large language models (LLMs) are decoded autoregressively; the\nmulti-head attention (MHA) layer "
    "dominates memory traffic.",
    "Reinforcement Learning from Human Feedback (RLHF) aligns the model, and Low-Rank Adaptation (LoRA) "
    "fine-tunes it cheaply; rotary position embedding (RoPE) encodes positions.",
    "GQA (grouped-query attention) was later adopted widely.",
]


def test_mines_realistic_definitions():
    acronyms = mine_acronyms(chunk(t, ordinal=i) for i, t in enumerate(REALISTIC))
    assert acronyms == {
        "GQA": "grouped-query attention",
        "MQA": "multi-query attention",
        "MoE": "mixture-of-experts",
        "LLM": "large language model",
        "MHA": "multi-head attention",
        "RLHF": "reinforcement learning from human feedback",
        "LoRA": "low-rank adaptation",
        "RoPE": "rotary position embedding",
    }


@pytest.mark.parametrize("text", [
    "As we show in this paper (see Table 2), quality holds.",
    "This was reported before (Ainslie et al., 2023) and (e.g., GQA) elsewhere.",
    "We train the model for longer (TPU) on more data (ABC).",
    "Accuracy improves (Figure 3) with scale (T5) and (2023).",
    "Second, the results (RS) hold.",  # a comma ends the run of words a long form may come from
])
def test_rejects_parentheses_that_define_nothing(text):
    assert definitions(text) == []


def test_most_frequent_long_form_wins_and_references_are_ignored():
    texts = ["the key-value (KV) cache grows", "the key-value (KV) cache", "keys and values (KV) are cached"]
    chunks = [chunk(t, ordinal=i) for i, t in enumerate(texts)]
    chunks.append(chunk("Kelly Vance (KV) 2021. Another paper.", refs=True, ordinal=9))
    assert mine_acronyms(chunks) == {"KV": "key-value"}


def test_expands_short_forms_with_mined_long_forms():
    acronyms = {"GQA": "grouped-query attention", "LLM": "large language model", "MoE": "mixture-of-experts"}
    query = parse_query("why do LLMs use GQA?", acronyms)
    assert query.text == "why do LLMs use GQA?"
    assert query.expanded == "why do LLMs use GQA? large language model grouped-query attention"
    assert not query.is_comparison and query.sides == ()
    assert parse_query("what is a moe layer", acronyms).expanded == "what is a moe layer mixture-of-experts"
    assert parse_query("what is grouped-query attention", acronyms).expanded.endswith(" GQA")
    assert parse_query("GQA grouped-query attention", acronyms).expanded == "GQA grouped-query attention"
    assert parse_query("nothing to expand here", acronyms).expanded == "nothing to expand here"


@pytest.mark.parametrize("question, sides", [
    ("How does GQA differ from MQA?", ("GQA", "MQA")),
    ("GQA vs. MQA", ("GQA", "MQA")),
    ("GQA versus multi-head attention", ("GQA", "multi-head attention")),
    ("compare GQA and MQA", ("GQA", "MQA")),
    ("Compare RoPE with ALiBi for long context", ("RoPE", "ALiBi")),
    # a side ends where its qualifiers begin; clauses are no sides (gold questions that got spurious notes)
    ("Mixtral 8x7B versus DeepSeek-V2: total parameters and parameters active per token.", ("Mixtral 8x7B", "DeepSeek-V2")),
    ("How does Dromedary compare with ChatGPT on the harmlessness part of the BIG-bench HHH Eval?",
     ("Dromedary", "ChatGPT")),
    ("What inference time per sample and average score do MQA-XXL and GQA-8-XXL get compared with MHA-XXL?", ()),
    ("Is doubling inference compute with guidance worth it compared with running a model twice the size?", ()),
    ("what is the difference between the Switch Transformer and GLaM?", ("Switch Transformer", "GLaM")),
    ("how do MoE and dense models compare", ("MoE", "dense models")),
    ("is GQA faster than MHA", ("GQA", "MHA")),
    ("compare GQA, MQA and MHA", ("GQA", "MQA", "MHA")),
    ("what is grouped-query attention", ()),
    ("how does uptraining work", ()),
])
def test_comparison_sides(question, sides):
    assert comparison_sides(question) == sides


def test_comparison_sides_are_expanded_too():
    acronyms = {"GQA": "grouped-query attention", "MQA": "multi-query attention"}
    query = parse_query("how does GQA differ from MQA", acronyms)
    assert query.is_comparison
    assert query.side_labels == ("GQA", "MQA")
    assert query.sides == ("GQA grouped-query attention", "MQA multi-query attention")
    assert query.expansions == (("GQA", "grouped-query attention"), ("MQA", "multi-query attention"))


def test_prefers_the_long_form_spelled_by_word_initials():
    found = definitions("We follow the Equal Employment Opportunity Commission (EEOC) and use Low-Rank Adaptation "
                        "(LoRA) for fine-tuning.")
    assert found == [("EEOC", "equal employment opportunity commission"), ("LoRA", "low-rank adaptation")]


def test_paper_names_single_out_one_paper():
    from rag.retrieve.query import named_papers, paper_names

    titles = {
        "gqa": "GQA: Training Generalized Multi-Query Transformer Models from Multi-Head Checkpoints",
        "switch": "Switch Transformers: Scaling to Trillion Parameter Models with Simple and Efficient Sparsity",
        "mixtral": "Mixtral of Experts",
        "lora": "LORA: LOW-RANK ADAPTATION OF LARGE LANGUAGE MODELS",
        "dpo": "Direct Preference Optimization: Your Language Model is Secretly a Reward Model",
        "v2": "DeepSeek-V2: A Strong, Economical, and Efficient Mixture-of-Experts Language Model",
        "moe": "DeepSeekMoE: Towards Ultimate Expert Specialization in Mixture-of-Experts Language Models",
    }
    names = paper_names(titles, {"DPO": "direct preference optimization", "MoE": "mixture-of-experts"})
    assert names == {"gqa": "gqa", "switch transformers": "switch", "mixtral of experts": "mixtral", "lora": "lora",
                     "direct preference optimization": "dpo", "dpo": "dpo", "deepseek-v2": "v2",
                     "deepseekmoe": "moe"}  # "MoE" is in two titles, so it names neither; LORA's caps are no names
    assert named_papers("How does the Switch Transformer route tokens?", names) == {"switch"}
    assert named_papers("What does DPO optimize, compared with GQA?", names) == {"dpo", "gqa"}
    assert named_papers("in DeepSeek-V2, what is MLA", names) == {"v2"}
    assert named_papers("what does arXiv 2305.13245v2 propose", names) == {"arxiv:2305.13245"}
    assert named_papers("how do mixture-of-experts layers route", names) == set()


def test_papers_named_side_by_side_are_told_from_a_name_used_as_a_word():
    """Names joined by "and", "or", a comma or "versus" ask the same of each paper; a name elsewhere in the
    question (RoPE, a concept, in a question about DeepSeek-V2) does not."""
    from rag.retrieve.query import coordinated_papers, without_names

    names = {"palm": "palm", "megabyte": "megabyte", "gqa": "gqa", "rope": "rope", "deepseek-v2": "v2",
             "switch transformers": "switch"}
    assert coordinated_papers("Which position encoding do PaLM and MEGABYTE use?", names) == {
        "palm": "PaLM", "megabyte": "MEGABYTE"}
    assert coordinated_papers("What do Switch Transformers and PaLM each do about instability?", names) == {
        "switch": "Switch Transformers", "palm": "PaLM"}
    assert list(coordinated_papers("the KV cache according to GQA and the PaLM paper", names)) == ["gqa", "palm"]
    assert list(coordinated_papers("How do GQA, MEGABYTE or PaLM cut memory?", names)) == ["gqa", "megabyte", "palm"]
    assert coordinated_papers("What decoupled RoPE head dimension does DeepSeek-V2 use?", names) == {}
    assert coordinated_papers("How does PaLM train?", names) == {}
    assert without_names("Which position encoding do PaLM and MEGABYTE use?", ["PaLM", "MEGABYTE"]) == \
        "Which position encoding do and use?"
    assert without_names("What do Switch Transformer models do?", ["Switch Transformers"]) == "What do models do?"
