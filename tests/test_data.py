"""Reading messy question files: every format, column naming, encoding and answer spelling we promise."""

import json
from collections import Counter

import pytest

from mcq_unsloth import DataError, Question, load_questions
from mcq_unsloth.data.questions import normalize_answer, split_questions, stratified_subset, summarize, write_questions

from helpers import error_line, run

FAST = ["--backend", "hf", "--batch-size", "4"]
FOUR = {"A": "北京", "B": "上海", "C": "广州", "D": "深圳"}


def write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


# (file name, content, expected first question) -- one case per promised input shape
READABLE = [
    # English columns A-D
    ("en.csv", "id,question,A,B,C,D,answer\nq1,中国的首都是？,北京,上海,广州,深圳,A\n",
     Question("q1", "中国的首都是？", FOUR, "A")),
    # simplified Chinese column names, 选项A.. option columns
    ("zh.csv", "题目,选项A,选项B,选项C,选项D,答案\n中国的首都是？,北京,上海,广州,深圳,B\n",
     Question("1", "中国的首都是？", FOUR, "B")),
    # 问题 as the question column, reasoning in 理由
    ("zh2.tsv", "问题\tA\tB\tC\tD\t理由\t答案\n中国的首都是？\t北京\t上海\t广州\t深圳\t首都是北京\tA\n",
     Question("1", "中国的首都是？", FOUR, "A", "首都是北京")),
    # traditional Chinese column names
    ("tw.csv", "問題,選項A,選項B,選項C,選項D,答案\n中國的首都是？,北京,上海,广州,深圳,C\n",
     Question("1", "中國的首都是？", FOUR, "C")),
    # option_A style columns and a label column, mixed case and spaces in the header
    ("opt.csv", "ID, Question ,option_A,option_B,Option_C,option_d,Label\n7,中国的首都是？,北京,上海,广州,深圳,d\n",
     Question("7", "中国的首都是？", FOUR, "D")),
    # JSONL with an options dict
    ("dict.jsonl", json.dumps({"id": "x", "question": "中国的首都是？", "options": FOUR, "answer": "A"},
                              ensure_ascii=False) + "\n",
     Question("x", "中国的首都是？", FOUR, "A")),
    # JSONL with a choices list and an integer label: the Hugging Face 0-based convention
    ("choices.jsonl", json.dumps({"question": "中国的首都是？", "choices": list(FOUR.values()), "label": 3},
                                 ensure_ascii=False) + "\n",
     Question("1", "中国的首都是？", FOUR, "D")),
    # an options dict written as JSON inside a CSV cell (quoted, with commas)
    ("dictcell.csv", 'question,options,answer\n中国的首都是？,"{""A"": ""北京"", ""B"": ""上海"", ""C"": ""广州"", '
                     '""D"": ""深圳""}",A\n',
     Question("1", "中国的首都是？", FOUR, "A")),
    # quoted fields holding commas and a newline
    ("quoted.csv", 'question,A,B,C,D,answer\n"北京, 中国的首都,\n是哪座城市？","北京","上海, 直辖市",广州,深圳,A\n',
     Question("1", "北京, 中国的首都,\n是哪座城市？", {**FOUR, "B": "上海, 直辖市"}, "A")),
    # three options in a four-column file: the trailing empty option is dropped
    ("three.csv", "question,A,B,C,D,answer\n1+1=?,1,2,3,,B\n", Question("1", "1+1=?", {"A": "1", "B": "2", "C": "3"}, "B")),
    # no answer column: a set to predict
    ("test.csv", "id,question,A,B,C,D\n5,中国的首都是？,北京,上海,广州,深圳\n", Question("5", "中国的首都是？", FOUR, None)),
    # an answer column left empty everywhere: also a set to predict
    ("empty_answers.csv", "question,A,B,C,D,answer\n中国的首都是？,北京,上海,广州,深圳,\n",
     Question("1", "中国的首都是？", FOUR, None)),
]


@pytest.mark.parametrize("name,content,expected", READABLE, ids=[case[0] for case in READABLE])
def test_reads_every_promised_shape(tmp_path, name, content, expected):
    (question,) = load_questions(write(tmp_path, name, content))
    assert question == expected


@pytest.mark.parametrize("encoding,bom", [("utf-8", False), ("utf-8", True), ("gbk", False), ("gb18030", False)])
def test_encodings(tmp_path, encoding, bom):
    text = "题目,A,B,C,D,答案\n中国的首都是哪座城市？,北京,上海,广州,深圳,A\n"
    raw = (b"\xef\xbb\xbf" if bom else b"") + text.encode(encoding)
    path = tmp_path / "q.csv"
    path.write_bytes(raw)
    (question,) = load_questions(path)
    assert question.question == "中国的首都是哪座城市？" and question.options == FOUR and question.answer == "A"


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "q.parquet"
    pq.write_table(pa.table({"question": ["中国的首都是？"], "A": ["北京"], "B": ["上海"], "C": ["广州"],
                             "D": ["深圳"], "answer": ["Ｃ"]}), path)
    assert load_questions(path) == [Question("1", "中国的首都是？", FOUR, "C")]


# raw answer cell -> normalised letter
ANSWERS = [
    ("A", "A"),          # plain
    ("b", "B"),          # lower case
    ("  C ", "C"),       # spaces
    ("Ｄ", "D"),          # full-width letter
    ("ｄ", "D"),          # full-width lower case
    ("D.", "D"),         # trailing full stop
    ("B、", "B"),         # Chinese enumeration comma
    ("（A）", "A"),       # full-width parentheses
    ("(c)", "C"),        # ASCII parentheses
    ("【B】", "B"),       # lenticular brackets
    ("答案：B", "B"),      # answer marker with a full-width colon
    ("答案:C", "C"),      # with an ASCII colon
    ("正确答案：Ｄ", "D"),  # longer marker, full-width letter
    ("Answer: a", "A"),  # English marker
    ("AB", None),        # two letters: not a single-choice answer
    ("A和B", None),       # likewise
    ("", None),          # nothing
    ("不知道", None),      # words
]


@pytest.mark.parametrize("raw,letter", ANSWERS)
def test_normalize_answer(raw, letter):
    assert normalize_answer(raw) == letter


def test_normalised_answers_in_a_file(tmp_path):
    rows = "".join(f"{i},题{i},甲,乙,丙,丁,{raw}\n" for i, (raw, letter) in enumerate(ANSWERS) if letter)
    questions = load_questions(write(tmp_path, "q.csv", "id,question,A,B,C,D,answer\n" + rows))
    assert [q.answer for q in questions] == [letter for _, letter in ANSWERS if letter]


# (file name, content, words the one-line error must contain) -- each names file, row, column and a fix
INVALID = [
    # the answer is not a letter
    ("bad_answer.csv", "question,A,B,C,D,answer\nq1,a,b,c,d,A\nq2,a,b,c,d,AB\n",
     ["bad_answer.csv", "data row 2", "column 'answer'", "'AB'", "Fix:"]),
    # the answer letter has no option
    ("no_option.csv", "question,A,B,C,answer\nq1,a,b,c,D\n", ["data row 1", "column 'answer'", "not among", "A, B, C"]),
    # no question column at all
    ("no_question.csv", "text,A,B,C,D,answer\nq,a,b,c,d,A\n", ["column 'question'", "Fix:", "题目"]),
    # no options in any form
    ("no_options.csv", "question,answer\nq,A\n", ["column 'A'", "option"]),
    # an empty question
    ("empty_q.csv", "question,A,B,C,D,answer\nq1,a,b,c,d,A\n ,a,b,c,d,B\n", ["data row 2", "column 'question'", "empty"]),
    # an empty option in the middle
    ("empty_opt.csv", "question,A,B,C,D,answer\nq1,a,,c,d,A\n", ["data row 1", "column 'B'", "option B is empty"]),
    # some answers given, one missing
    ("partial.csv", "question,A,B,C,D,answer\nq1,a,b,c,d,A\nq2,a,b,c,d,\n", ["data row 2", "column 'answer'", "remove"]),
    # the same id twice
    ("dup.csv", "id,question,A,B,C,D,answer\n1,q,a,b,c,d,A\n1,q2,a,b,c,d,B\n", ["data row 2", "column 'id'", "data row 1"]),
    # a broken JSON line
    ("broken.jsonl", '{"question": "q", "A": "a", "B": "b", "answer": "A"}\n{"question": "q2", \n',
     ["broken.jsonl", "data row 2", "invalid JSON"]),
    # more fields than the header (an unquoted comma)
    ("fields.csv", "question,A,B,C,D,answer\n1,000 people?,a,b,c,d,A\n", ["data row 1", "7 fields", "quote"]),
    # option columns with a gap
    ("gap.csv", "question,A,B,D,answer\nq,a,b,d,A\n", ["not consecutive", "column 'D'"]),
    # a choices cell that is not a list
    ("choices.csv", "question,choices,answer\nq,oops,A\n", ["data row 1", "column 'choices'", "list"]),
    # an answer index out of range
    ("index.jsonl", '{"question": "q", "choices": ["a", "b"], "label": 5}\n', ["data row 1", "column 'label'", "0..1"]),
    # an unknown file type
    ("q.xlsx", "whatever", ["unknown file type", ".csv"]),
    # a header and nothing else
    ("header_only.csv", "question,A,B,answer\n", ["no data rows"]),
]


@pytest.mark.parametrize("name,content,words", INVALID, ids=[case[0] for case in INVALID])
def test_invalid_files_name_row_column_and_fix(tmp_path, name, content, words):
    with pytest.raises(DataError) as error:
        load_questions(write(tmp_path, name, content))
    message = str(error.value)
    assert "\n" not in message.strip()
    for word in words:
        assert word in message


def test_undecodable_bytes(tmp_path):
    path = tmp_path / "q.csv"
    path.write_bytes("question,A,B,answer\n".encode() + b"\xff\xfe\xfd\x81\x30,a,b,A\n")
    with pytest.raises(DataError, match="neither UTF-8 nor GBK"):
        load_questions(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_questions(tmp_path / "nope.csv")


def test_summary_counts_answers():
    qs = [Question(str(i), "q", dict(FOUR), "ABCD"[i % 3]) for i in range(6)]
    assert summarize(qs) == {"rows": 6, "labelled": True, "answers": {"A": 2, "B": 2, "C": 2, "D": 0}}
    assert summarize([Question("1", "q", dict(FOUR))]) == {"rows": 1, "labelled": False}


def test_split_is_seeded_and_disjoint():
    qs = [Question(str(i), f"q{i}", dict(FOUR), "A") for i in range(100)]
    train, val = split_questions(qs)
    assert (len(train), len(val)) == (90, 10)
    assert {q.id for q in train}.isdisjoint(q.id for q in val)
    assert split_questions(qs) == (train, val)                      # same seed, same split
    assert split_questions(qs, seed=1)[1] != val                      # another seed, another split
    assert [q.id for q in train] == sorted((q.id for q in train), key=int)  # original order kept


def test_stratified_subset_keeps_letter_shares():
    qs = [Question(str(i), "q", dict(FOUR), "AABBBBCCDD"[i % 10]) for i in range(1000)]
    half = stratified_subset(qs, 0.5, seed=3)
    assert Counter(q.answer for q in half) == {"A": 100, "B": 200, "C": 100, "D": 100}
    assert stratified_subset(qs, 0.5, seed=3) == half
    assert stratified_subset(qs, 0.5, seed=4) != half


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_write_then_read_round_trip(tmp_path, suffix):
    qs = [Question("a", "含,逗号\n和换行", dict(FOUR), "B", "因为"), Question("b", "q2", dict(FOUR), "C", "所以")]
    path = tmp_path / f"out{suffix}"
    write_questions(qs, path)
    assert load_questions(path) == qs


def test_shipped_data_is_valid_and_balanced():
    from mcq_unsloth.resources import shipped_file

    mcq = load_questions(shipped_file("mcq_zh.csv"))
    reasoning = load_questions(shipped_file("reasoning_zh.tsv"))
    assert len(mcq) >= 200 and len(reasoning) >= 100
    for questions in (mcq, reasoning):
        counts = Counter(q.answer for q in questions)
        assert max(counts.values()) - min(counts.values()) <= 1
        assert all(len(q.options) == 4 for q in questions)
    assert all(q.reasoning for q in reasoning)
    assert not {q.question for q in mcq} & {q.question for q in reasoning}


# --- one process's share, read as a stream (prediction in a launch) --------------------------------------------

def _many(count: int) -> list[Question]:
    return [Question(f"q{i}", f"第{i}题：" + "很长的题目文字" * 20, {x: f"选项{x}{i}" * 5 for x in "ABCD"}, "ABCD"[i % 4])
            for i in range(count)]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_shares_are_the_blocks_of_the_whole_file(tmp_path, suffix):
    from mcq_unsloth.data.questions import read_questions, read_share

    questions = _many(23)
    path = tmp_path / f"q{suffix}"
    if suffix == ".parquet":
        from mcq_unsloth.data.sources import questions_frame

        questions_frame(questions).to_parquet(path)
    else:
        write_questions(questions, path)
    whole = read_questions(path)
    skip = {"q0", "q5", "q22"}
    shares = [read_share(path, rank, 3, skip) for rank in range(3)]
    assert [len(s.questions) for s in shares] == [7, 7, 6]
    assert [q for s in shares for q in s.questions] == [q for q in whole if q.id not in skip]
    assert {(s.rows, s.pending, s.labelled) for s in shares} == {(23, 20, True)}
    gold = read_share(path, texts=False).questions
    assert [(q.id, list(q.options), q.answer) for q in gold] == [(q.id, list(q.options), q.answer) for q in whole]
    assert {q.question for q in gold} == {""}


def test_a_share_checks_the_whole_file(tmp_path):
    """A bad row outside a process's block stops that process too, with the same message as a whole read."""
    from mcq_unsloth.data.questions import read_questions, read_share

    rows = "".join(f"q{i},题{i},甲,乙,A\n" for i in range(10))
    for bad, words in (("q3,题,甲,乙,E\n", "row 11"), ("q0,题,甲,乙,A\n", "also appears in data row 1"),
                       ("q10,题,甲,乙,\n", "given in 10 other rows")):
        path = write(tmp_path, "bad.csv", "id,question,A,B,answer\n" + rows + bad)
        with pytest.raises(DataError) as whole:
            read_questions(path)
        with pytest.raises(DataError) as first:
            read_share(path, 0, 4)
        assert str(first.value) == str(whole.value) and words in str(first.value)


@pytest.mark.slow
def test_a_share_is_read_without_holding_the_file(tmp_path):
    """Memory measured, not assumed: reading one share of eight of a 20,000-question file takes a fraction of
    what reading the file takes (the checks keep every id, nothing else)."""
    import gc
    import tracemalloc

    from mcq_unsloth.data.questions import read_questions, read_share

    path = tmp_path / "many.csv"
    write_questions(_many(20_000), path)

    def peak(read) -> int:
        gc.collect()
        tracemalloc.start()
        try:
            kept = read()
            return tracemalloc.get_traced_memory()[1], kept
        finally:
            tracemalloc.stop()

    whole, questions = peak(lambda: read_questions(path))
    share, block = peak(lambda: read_share(path, 7, 8))
    assert len(block.questions) == 2500 and block.questions == questions[17_500:]
    print(f"peak memory: whole file {whole / 1e6:.1f} MB, one share of eight {share / 1e6:.1f} MB")
    assert share < whole / 3, (share, whole)


# --- line separators inside texts, CSV shape -------------------------------------------------------------------------

SEPARATORS = "\u2028\u2029\u0085\x1c\x1d\x1e\x0b\x0c"  # all of which str.splitlines() splits on


def test_jsonl_with_unicode_line_separators_reads_back_whole(tmp_path):
    questions = [Question(f"q{i}", f"第一行{sep}第二行", {"A": f"甲{sep}子", "B": "乙", "C": "丙", "D": "丁"}, "A")
                 for i, sep in enumerate(SEPARATORS)]
    path = tmp_path / "validation.jsonl"
    write_questions(questions, path)
    assert [(q.id, q.question, q.options) for q in load_questions(path)] == \
        [(q.id, q.question, q.options) for q in questions]
    assert ok_check(path) == len(SEPARATORS)


def ok_check(path) -> int:
    result = run("data", "check", path, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])["rows"]


@pytest.mark.parametrize("text, says", [
    ("id,question,A,B,C,D,answer,answer\n1,q,a,b,c,d,A,B\n",
     "column 'answer': the header has 2 columns named 'answer': which one to read is not clear"),
    ("id,question,A,B,C,D,answer\n1,q,a,b,c,d,A\n2,q,a,b,c\n",
     "data row 2: 5 fields but the header has 7 (the fields from 'D' on are missing)"),
    ("id,question,A,B,C,D,answer\n1,q,a,b,c,d,A,extra\n", "data row 1: 8 fields but the header has 7"),
])
def test_csv_of_the_wrong_shape_is_refused_naming_row_and_counts(tmp_path, tiny_model_dir, text, says):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    assert says in error_line(run("data", "check", path))
    line = error_line(run("predict", "--model", tiny_model_dir, "--data", path, "--out", tmp_path / "s.csv", *FAST))
    assert line.startswith(f"Error: {path}: ") and says in line
    assert not (tmp_path / "s.csv").exists()
