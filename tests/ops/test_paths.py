from ops.paths import sku_slug


def test_slugs_are_safe_file_names():
    for sku in ["../../etc/x", "/abs/path", "a\0b", "x" * 300, "CON", "ＡＢＣ", "a b/c\\d", "..", ""]:
        slug = sku_slug(sku)
        assert "/" not in slug and "\\" not in slug and "\0" not in slug
        assert not slug.startswith(".") and 0 < len(slug) <= 64
        assert all(ch.isascii() and (ch.isalnum() or ch in "._-") for ch in slug)


def test_slugs_are_unique_where_skus_fold_together():
    skus = ["ABC", "abc", "a/b", "a-b", "a b", "ÀBC", "x" * 300, "x" * 301]
    slugs = [sku_slug(s) for s in skus]
    assert len(set(slugs)) == len(skus)
    assert len({s.lower() for s in slugs}) == len(skus)  # case-insensitive file systems


def test_slug_is_stable_and_readable():
    assert sku_slug("SHOE-01") == sku_slug("SHOE-01")
    assert sku_slug("SHOE-01").startswith("SHOE-01-")
