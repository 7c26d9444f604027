"""policy.growth: victims and headroom for KV growth where freed blocks come back a step late."""

from vllm_cfs.policy import Growth, admission_headroom, growth_victims

DECODING = Growth(held=70, this_step=0, by_next_step=0)
NEEDS_A_BLOCK_NOW = Growth(held=70, this_step=1, by_next_step=1)


def test_a_shortfall_now_takes_only_the_needy_not_the_whole_tail():
    # The needy request stands at the head (a newcomer just prefilled, say); the tail needs
    # nothing, and blocks freed now come back only next step, so no tail victim can help now.
    running = [NEEDS_A_BLOCK_NOW] + [DECODING] * 14
    assert growth_victims(running, free_now=0, returning=0) == [0]


def test_the_lowest_ranked_needy_go_first_and_no_more_than_the_shortfall():
    running = [NEEDS_A_BLOCK_NOW, DECODING, NEEDS_A_BLOCK_NOW, NEEDS_A_BLOCK_NOW, DECODING]
    assert growth_victims(running, free_now=1, returning=0) == [3, 2]


def test_next_steps_shortfall_takes_the_tail_whose_blocks_return_by_then():
    soon = Growth(held=64, this_step=0, by_next_step=1)
    running = [soon] * 4
    assert growth_victims(running, free_now=0, returning=0) == [3]  # its 64 blocks cover the other three
    assert growth_victims(running, free_now=0, returning=4) == []  # blocks already on their way back


def test_enough_free_blocks_take_no_victim():
    running = [NEEDS_A_BLOCK_NOW] * 3 + [Growth(held=64, this_step=0, by_next_step=1)] * 2
    assert growth_victims(running, free_now=5, returning=0) == []
    assert growth_victims([], free_now=0, returning=0) == []


def test_an_admission_leaves_room_for_next_steps_decodes_and_its_own_first():
    running = [Growth(held=64, this_step=0, by_next_step=1)] * 3 + [NEEDS_A_BLOCK_NOW] * 2
    assert admission_headroom(running, returning=0) == 3 + 1
    assert admission_headroom(running, returning=2) == 2
    assert admission_headroom(running, returning=100) == 0
    assert admission_headroom([], returning=0) == 1
