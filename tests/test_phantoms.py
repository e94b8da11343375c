import numpy as np
import pytest

from synthaug.data.phantoms import class_names, generate


def test_shapes_labels_and_masks() -> None:
    data = generate(80, 32, seed=0)
    assert data.images.shape == (80, 32, 32) and data.images.dtype == np.uint8
    assert data.class_names == ("glioma", "meningioma", "notumor", "pituitary")
    assert data.class_counts().tolist() == [20, 20, 20, 20]
    assert set(data.splits) == {"train", "test"} and (data.splits == "test").sum() == 16
    notumor = data.class_names.index("notumor")
    assert not data.masks[data.labels == notumor].any()
    assert all(data.masks[i].any() for i in np.flatnonzero(data.labels != notumor))


def test_deterministic_per_seed_and_prefix_stable() -> None:
    a, b = generate(40, 32, seed=1), generate(40, 32, seed=1)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks)
    assert not np.array_equal(a.images, generate(40, 32, seed=2).images)


def test_masks_mark_brighter_lesion_tissue() -> None:
    data = generate(200, 64, seed=4)
    lesion = data.labels != data.class_names.index("notumor")
    inside = [data.images[i][data.masks[i]].mean() for i in np.flatnonzero(lesion)]
    # Compare with the same pixels in no-lesion images: lesions add signal there.
    healthy = data.images[~lesion].mean(0)
    outside = [healthy[data.masks[i]].mean() for i in np.flatnonzero(lesion)]
    assert np.mean(np.array(inside) > np.array(outside)) > 0.85


def test_classes_are_distinguishable_but_not_trivially() -> None:
    from sklearn.linear_model import LogisticRegression

    data = generate(600, 32, seed=7)
    x = data.images.reshape(len(data), -1) / 255.0
    train, test = data.splits == "train", data.splits == "test"
    acc = LogisticRegression(max_iter=300, C=0.1).fit(x[train], data.labels[train]).score(x[test], data.labels[test])
    assert 0.35 < acc < 0.98  # above chance (0.25) without being a solved problem for a linear model


def test_imbalance_and_rare_class() -> None:
    data = generate(100, 32, seed=0, imbalance={"pituitary": 0.1}, rare_class=True)
    assert data.class_names == class_names(True)
    counts = dict(zip(data.class_names, data.class_counts().tolist(), strict=True))
    assert counts["pituitary"] < counts["glioma"] / 5 and sum(counts.values()) == 100
    with pytest.raises(ValueError, match="unknown phantom class"):
        generate(10, 32, imbalance={"tumour": 1.0})


def test_lesion_scale_and_contrast_make_larger_brighter_lesions_and_default_is_unchanged() -> None:
    base = generate(64, 32, seed=3)
    same = generate(64, 32, seed=3, lesion_scale=1.0, lesion_contrast=1.0)
    assert np.array_equal(base.images, same.images) and np.array_equal(base.masks, same.masks)
    easy = generate(64, 32, seed=3, lesion_scale=2.0, lesion_contrast=2.0)
    assert np.array_equal(base.labels, easy.labels)
    sick = base.labels != base.class_names.index("notumor")
    assert easy.masks[sick].sum() > 2 * base.masks[sick].sum()  # area grows about with the square of the scale
    healthy = ~sick
    assert np.array_equal(base.images[healthy], easy.images[healthy])  # no lesion: nothing changes
