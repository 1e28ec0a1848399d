"""The page → item-class map: which item class, if any, a page id shows.

The fixed map R of the repeat path and of tied embeddings (docs/MODEL.md,
section 17) is its one-hot form, and the evaluation's baselines relate viewed
pages to item classes with it. It lives here, free of I/O and of drnngen.data,
so that `drnngen.bind` (which writes R's weights file) and
`drnngen.evaluation` can both import it. Pages and items are both raw ids of
the log (a page view is a view of the item's page), so a page id and a class
are the same item when their raw ids are equal.
"""

from __future__ import annotations

from collections.abc import Sequence

from drnngen.errors import UserError

NO_ITEM = -1  # padding (id 0), OOV (id 1) and pages that are no item


class PageItemError(UserError):
    """The page → item map cannot be made for a dataset, or written beside it."""


def page_item(page_keys: Sequence[object], item_keys: Sequence[object]) -> list[int]:
    """The item class of every page id (index = page id), or NO_ITEM.

    `page_keys` is `Manifest.page_keys()` (raw page id per page id, None for
    padding and OOV), `item_keys` is `Manifest.item_keys()` (raw item id per
    class). Raw ids are compared as text: JSON keeps a log's ids as numbers or
    strings.
    """
    class_of = {str(key): index for index, key in enumerate(item_keys)}
    return [NO_ITEM if key is None else class_of.get(str(key), NO_ITEM) for key in page_keys]
