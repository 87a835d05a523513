"""Single-point training prompts: a point inside each chosen object, points on background, their targets."""

import torch

from sam_mito.data.point_prompts import sample_point_prompts

#: Two objects on a 4x6 patch: object 1 the left 2x2 block, object 2 the single pixel (row 3, col 5).
INSTANCES = torch.tensor(
    [
        [1, 1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 2],
    ]
)


def _draw(instances=INSTANCES, *, max_objects=2, background=1, seed=0):
    return sample_point_prompts(
        instances,
        max_objects=max_objects,
        background=background,
        generator=torch.Generator().manual_seed(seed),
    )


def _label_under(point, instances=INSTANCES):
    x, y = point.tolist()
    return int(instances[int(y), int(x)])


def test_each_object_point_lies_inside_its_target_and_background_points_have_empty_targets():
    for seed in range(20):
        points, targets = _draw(background=3, seed=seed)
        assert points.shape == (5, 2) and targets.shape == (5, 4, 6)
        objects = [_label_under(p) for p in points[:2]]
        assert sorted(objects) == [1, 2]
        for point, target, label in zip(points[:2], targets[:2], objects, strict=True):
            assert torch.equal(target.bool(), INSTANCES == label)
            assert target[int(point[1]), int(point[0])] == 1
        assert [_label_under(p) for p in points[2:]] == [0, 0, 0]
        assert targets[2:].sum() == 0


def test_points_sit_at_pixel_centres():
    points, _ = _draw(seed=3)
    assert torch.equal(points % 1, torch.full_like(points, 0.5))
    # the single-pixel object's point is exactly its centre
    lone = [p for p in points if _label_under(p) == 2]
    assert torch.equal(lone[0], torch.tensor([5.5, 3.5]))


def test_max_objects_picks_a_random_subset_of_the_objects():
    chosen = {_label_under(_draw(max_objects=1, background=0, seed=seed)[0][0]) for seed in range(30)}
    assert chosen == {1, 2}
    points, targets = _draw(max_objects=1, background=0)
    assert len(points) == len(targets) == 1


def test_the_same_generator_seed_draws_the_same_prompts():
    first, second = _draw(background=2, seed=7), _draw(background=2, seed=7)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_a_patch_without_objects_gives_background_points_only():
    points, targets = _draw(torch.zeros(3, 3, dtype=torch.long), background=2)
    assert points.shape == (2, 2) and targets.sum() == 0


def test_a_patch_that_is_all_object_gives_no_background_point():
    points, targets = _draw(torch.ones(2, 2, dtype=torch.long), background=4)
    assert len(points) == 1 and torch.equal(targets[0], torch.ones(2, 2))


def test_nothing_to_prompt_gives_empty_tensors():
    points, targets = _draw(torch.zeros(3, 3, dtype=torch.long), background=0)
    assert points.shape == (0, 2) and targets.shape == (0, 3, 3)
