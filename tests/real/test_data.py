import importlib.util
import json

import pytest

from allocbench.errors import ConfigError
from real.data import HUB_DATASETS, arith_problems, load_problems


def write_jsonl(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_jsonl_with_field_mapping_and_nested_paths(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [
        {"prompt": [{"content": "1+1?"}], "reward_model": {"ground_truth": "2"}},
        {"prompt": [{"content": "2+2?"}], "reward_model": {"ground_truth": 4}},
    ])
    problems, report = load_problems(str(path), question_field="prompt.0.content",
                                     answer_field="reward_model.ground_truth")
    assert [(p.question, p.answer) for p in problems] == [("1+1?", "2"), ("2+2?", "4")]
    assert report.kept == 2 and not report.skipped


def test_malformed_jsonl_rows_are_an_error_naming_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [
        {"question": "ok?", "answer": "1"},
        "{not json",
        {"question": "no answer here"},
        {"question": "empty", "answer": "  "},
        {"question": "fine", "answer": "3"},
    ])
    with pytest.raises(ConfigError) as e:
        load_problems(str(path))
    message = str(e.value)
    assert "3 malformed" in message
    assert f"{path}:2: invalid JSON" in message
    assert f"{path}:3: no field 'answer'" in message
    assert f"{path}:4: field 'answer' is empty" in message


def test_malformed_rows_are_skipped_and_reported_with_the_flag(tmp_path, capsys):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"question": "a", "answer": "1"}, "[1, 2", {"answer": "2"}])
    problems, report = load_problems(str(path), skip_malformed=True)
    assert [p.answer for p in problems] == ["1"]
    assert len(report.skipped) == 2 and report.skipped[0].startswith(f"{path}:2")
    assert "skipped 2 malformed row(s)" in capsys.readouterr().err


def test_parquet_rows_are_numbered(tmp_path):
    import pandas as pd

    path = tmp_path / "d.parquet"
    pd.DataFrame({"problem": ["x", "y", None], "solution": ["1", "2", "3"]}).to_parquet(path)
    with pytest.raises(ConfigError, match=r"d.parquet: row 3: field 'problem' is empty"):
        load_problems(str(path), question_field="problem", answer_field="solution")
    problems, _ = load_problems(str(path), question_field="problem", answer_field="solution", skip_malformed=True)
    assert [p.question for p in problems] == ["x", "y"]


def test_json_array_file_and_missing_file(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([{"question": "q", "answer": "1"}, {"question": "r", "answer": 2.5}]))
    problems, _ = load_problems(str(path))
    assert [p.answer for p in problems] == ["1", "2.5"]
    with pytest.raises(ConfigError, match="not found"):
        load_problems(str(tmp_path / "missing.jsonl"))


def test_hub_datasets_go_through_datasets_with_their_field_mapping(monkeypatch):
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load_dataset(hub_id, config=None, split=None):
        calls.append((hub_id, config, split))
        if hub_id == "openai/gsm8k":
            return datasets.Dataset.from_list([
                {"question": "Tom has 3 apples...", "answer": "3 + 4 = 7\n#### 1,007"},
                {"question": "no marker", "answer": "7"}])
        return datasets.Dataset.from_list([{"prompt": [{"role": "user", "content": "Q?"}],
                                            "reward_model": {"ground_truth": "42", "style": "rule"}}])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    with pytest.raises(ConfigError, match=r"openai/gsm8k\[test\]: row 2: answer has no '####' marker"):
        load_problems("gsm8k")
    problems, _ = load_problems("gsm8k", skip_malformed=True)
    assert (problems[0].answer, calls[0]) == ("1007", ("openai/gsm8k", "main", "test"))
    problems, _ = load_problems("dapo-math-17k")
    assert (problems[0].question, problems[0].answer) == ("Q?", "42")
    assert calls[-1] == ("BytedTsinghua-SIA/DAPO-Math-17k", None, "train")


def test_hub_failure_is_a_clear_config_error(monkeypatch):
    datasets = pytest.importorskip("datasets")

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'HuggingFaceH4/MATH-500' on the Hub (offline)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(ConfigError, match="could not load HuggingFaceH4/MATH-500.*pass the file path"):
        load_problems("math500")


def test_every_named_dataset_has_a_hub_spec():
    assert set(HUB_DATASETS) == {"gsm8k", "math500", "aime24", "amc23", "minerva", "olympiadbench",
                                 "deepmath-103k", "polaris-53k", "dapo-math-17k", "deepscaler"}
    with pytest.raises(ConfigError, match="unknown data source"):
        load_problems("no-such-source")


def needs_champ():
    # the loader reads the package's JSON without importing it (its __init__ needs natsort)
    if importlib.util.find_spec("champ_dataset") is None:
        pytest.skip("champ-dataset is not installed")


def test_champ_loader_reads_the_shipped_json():
    needs_champ()
    problems, report = load_problems("champ")
    assert len(problems) == 270 and report.kept == 270
    assert all(p.question and p.answer for p in problems)
    assert problems[0].answer == "239"


def test_champ_answers_verify_against_themselves():
    needs_champ()
    pytest.importorskip("math_verify")
    from real.verifier import MathVerifier

    problems, _ = load_problems("champ", size=30)
    numeric = [p for p in problems if p.answer.lstrip("-").isdigit()]
    v = MathVerifier(isolation="inline")
    assert numeric and v.score_many([f"\\boxed{{{p.answer}}}" for p in numeric], [p.answer for p in numeric]).all()


def test_reasoning_gym_source_scores_with_the_verifier():
    pytest.importorskip("reasoning_gym")
    pytest.importorskip("math_verify")
    from real.verifier import MathVerifier

    problems, _ = load_problems("reasoning_gym:basic_arithmetic", size=20, seed=3)
    assert len(problems) == 20 and all(p.answer for p in problems)
    v = MathVerifier(isolation="inline")
    right = v.score_many([f"\\boxed{{{p.answer}}}" for p in problems], [p.answer for p in problems])
    wrong = v.score_many([f"\\boxed{{{p.answer}1}}" for p in problems], [p.answer for p in problems])
    assert right.all() and not wrong.any()


def test_arith_problems_are_distinct_graded_and_correct():
    problems = arith_problems(300, seed=1)
    assert len({p.question for p in problems}) == 300
    assert {p.difficulty for p in problems} == set(map(float, range(1, 9)))
    for p in problems[:50]:
        assert str(eval(p.question.rstrip("="))) == p.answer  # noqa: S307 - our own digits
    assert arith_problems(50, seed=1) != arith_problems(50, seed=2)
    with pytest.raises(ConfigError):
        arith_problems(10, levels=[99])
