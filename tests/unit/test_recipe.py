"""One default recipe: the same query weight for every model, and the switches a probed model's
vocabulary decides, unless set."""

from inversionview.decoder.config import LARGE_VOCABULARY, QUERY_WEIGHT, DecoderTrainConfig


def test_a_text_vocabulary_switches_on_the_text_recipe():
    task = DecoderTrainConfig().for_vocabulary(40)
    assert (task.tied_embeddings, task.token_match) == (False, False)
    text = DecoderTrainConfig().for_vocabulary(LARGE_VOCABULARY)
    assert (text.tied_embeddings, text.token_match) == (True, True)
    assert task.query_weight == text.query_weight == QUERY_WEIGHT  # one weight for every model
    from_gpt2 = DecoderTrainConfig().for_vocabulary(50257, pretrained_start=True)
    assert from_gpt2.token_match is False  # a pretrained start has its own read-out


def test_a_switch_that_is_set_stays_as_set():
    chosen = DecoderTrainConfig(token_match=False, query_weight=3.0).for_vocabulary(30522)
    assert (chosen.tied_embeddings, chosen.token_match, chosen.query_weight) == (True, False, 3.0)
    small = DecoderTrainConfig(token_match=True).for_vocabulary(15)
    assert small.token_match is True


def test_a_run_saved_before_the_query_weight_existed_resumes_without_it():
    saved = {field: value for field, value in vars(DecoderTrainConfig()).items() if field != "query_weight"}
    assert DecoderTrainConfig.from_saved(saved).query_weight == 1.0
    assert DecoderTrainConfig.from_saved({**saved, "query_weight": 20.0}).query_weight == 20.0
