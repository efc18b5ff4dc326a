"""Layout rules on hand-placed lines (no engine): grouping, orientation, order, filters."""
from __future__ import annotations

import numpy as np

from pipelines.engines.base import Line
from pipelines.layout import detect_lang, layout_page, normalize_text


def vline(x, y, text, w=30, score=0.99):
    """A vertical column of ``len(text)`` characters, ``w`` pixels wide."""
    return Line([[x, y], [x + w, y], [x + w, y + w * len(text)], [x, y + w * len(text)]], text, score)


def hline(x, y, text, h=24, score=0.99):
    return Line([[x, y], [x + h * 0.6 * len(text), y], [x + h * 0.6 * len(text), y + h], [x, y + h]], text, score)


def test_vertical_block_reads_columns_right_to_left():
    lines = [vline(100, 50, "ですね"), vline(170, 50, "そうか"), vline(135, 50, "いい")]  # engine order is arbitrary
    page = layout_page(lines, 800, 1200)
    assert len(page.blocks) == 1
    block = page.blocks[0]
    assert block.vertical and block.texts == ["そうか", "いい", "ですね"]
    assert page.text == "そうかいいですね"
    m = block.to_mokuro()
    assert m["box"] == [100, 50, 200, 140] and m["vertical"] is True and m["font_size"] == 30
    assert m["lines"] == ["そうか", "いい", "ですね"] and len(m["lines_coords"]) == 3


def test_horizontal_block_reads_top_to_bottom():
    lines = [hline(100, 140, "the door"), hline(100, 110, "open")]
    page = layout_page(lines, 800, 1200, lang="en")
    assert [b.texts for b in page.blocks] == [["open", "the door"]]
    assert not page.blocks[0].vertical
    assert page.text == "open the door"


def test_distant_columns_are_separate_blocks():
    lines = [vline(600, 50, "みぎ"), vline(100, 50, "ひだり")]
    page = layout_page(lines, 800, 1200)
    assert len(page.blocks) == 2


def test_japanese_blocks_read_right_to_left_then_down():
    lines = [
        vline(100, 100, "さん"),   # top left
        vline(600, 100, "いち"),   # top right
        vline(600, 700, "よん"),   # bottom right
        vline(100, 700, "ご"),     # bottom left
        vline(350, 100, "に"),     # top middle
    ]
    page = layout_page(lines, 800, 1200)
    assert page.lang == "ja"
    assert page.text.split("\n") == ["いち", "に", "さん", "よん", "ご"]


def test_english_blocks_read_left_to_right():
    lines = [hline(500, 100, "second"), hline(50, 100, "first"), hline(50, 700, "third")]
    page = layout_page(lines, 800, 1200)
    assert page.lang == "en"
    assert page.text.split("\n") == ["first", "second", "third"]


def test_tall_panel_on_the_right_is_read_before_the_left_column():
    """Gutters decide: a white column gutter beats the gap between rows of bubbles."""
    img = np.full((1000, 800, 3), 255, np.uint8)
    # right panel x 420..780 (full height), left panels x 20..380 stacked; 4 px borders
    for x1, y1, x2, y2 in [(420, 20, 780, 980), (20, 20, 380, 480), (20, 520, 380, 980)]:
        img[y1:y1 + 4, x1:x2] = 0
        img[y2 - 4:y2, x1:x2] = 0
        img[y1:y2, x1:x1 + 4] = 0
        img[y1:y2, x2 - 4:x2] = 0
    lines = [vline(600, 60, "いち"), vline(100, 100, "さん"), vline(600, 600, "に"), vline(100, 600, "よん")]
    page = layout_page(lines, 800, 1000, image=img)
    assert page.text.split("\n") == ["いち", "に", "さん", "よん"]
    # without the image there are no gutters and rows win
    assert layout_page(lines, 800, 1000).text.split("\n") == ["いち", "さん", "に", "よん"]


def test_page_number_in_margin_is_dropped_but_digits_in_a_bubble_kept():
    lines = [vline(600, 100, "それは"), hline(390, 1170, "12", h=20), vline(300, 500, "１９８５", w=30)]
    page = layout_page(lines, 800, 1200)
    assert ("page number", "12") in page.dropped
    assert "1985" in page.text and "12" not in page.text.split("\n")


def test_large_drawn_kana_is_a_sound_effect_and_dropped():
    lines = [vline(600, 100, "それは"), vline(640, 500, "ほんと", w=30), vline(100, 300, "ドン", w=120)]
    page = layout_page(lines, 800, 1200)
    assert ("sound effect", "ドン") in page.dropped
    assert "ドン" not in page.text


def test_low_confidence_lines_dropped():
    lines = [vline(600, 100, "それは"), vline(100, 100, "ゴゴゴ", score=0.3)]
    page = layout_page(lines, 800, 1200)
    assert page.text == "それは" and ("low confidence", "ゴゴゴ") in page.dropped


def test_normalisation():
    assert normalize_text("ＡＢＣ　１２３") == "ABC 123"
    assert normalize_text("そう …  だね", "ja") == "そう...だね"
    assert normalize_text("日本 語") == "日本語"
    assert normalize_text("ｶﾀｶﾅ") == "カタカナ"
    assert normalize_text("hello   world ") == "hello world"


def test_language_detection():
    assert detect_lang([vline(0, 0, "日本語のテキスト")]) == "ja"
    assert detect_lang([hline(0, 0, "plain English text")]) == "en"
    tall = [Line([[x, 0], [x + 30, 0], [x + 30, 200], [x, 200]]) for x in (0, 40)]
    wide = [Line([[0, y], [200, y], [200, y + 30], [0, y + 30]]) for y in (0, 40)]
    assert detect_lang(tall) == "ja"  # no text: vertical lines mean Japanese
    assert detect_lang(wide) == "en"


def test_bubbles_keep_neighbouring_columns_apart():
    """Two columns close together but in different bubbles are two blocks."""
    import cv2

    img = np.full((600, 600, 3), 255, np.uint8)
    img[:] = 120  # screentone-grey art around the bubbles
    cv2.ellipse(img, (240, 150), (60, 100), 0, 0, 360, (255, 255, 255), -1)
    cv2.ellipse(img, (360, 150), (56, 100), 0, 0, 360, (255, 255, 255), -1)
    cv2.ellipse(img, (240, 150), (60, 100), 0, 0, 360, (0, 0, 0), 3)
    cv2.ellipse(img, (360, 150), (56, 100), 0, 0, 360, (0, 0, 0), 3)
    lines = [vline(266, 100, "みぎ"), vline(306, 100, "ひだり")]
    assert len(layout_page(lines, 600, 600).blocks) == 1
    assert len(layout_page(lines, 600, 600, image=img).blocks) == 2


def test_empty_page():
    page = layout_page([], 800, 1200)
    assert page.blocks == [] and page.text == ""
    assert page.to_mokuro() == {"img_width": 800, "img_height": 1200, "blocks": [], "text": ""}


def _panel_page(panels, bubbles, size=(800, 1000)):
    """A page: white gutters, panels with a 4 px border and screentone-grey art, white bubbles with an outline."""
    import cv2

    w, h = size
    img = np.full((h, w, 3), 255, np.uint8)
    for x1, y1, x2, y2 in panels:
        img[y1:y2, x1:x2] = 140
        cv2.rectangle(img, (x1, y1), (x2 - 1, y2 - 1), (0, 0, 0), 4)
    for x1, y1, x2, y2 in bubbles:
        centre, axes = ((x1 + x2) // 2, (y1 + y2) // 2), ((x2 - x1) // 2 + 14, (y2 - y1) // 2 + 14)
        cv2.ellipse(img, centre, axes, 0, 0, 360, (255, 255, 255), -1)
        cv2.ellipse(img, centre, axes, 0, 0, 360, (0, 0, 0), 3)
    return img


def test_two_panels_two_bubbles_each_read_in_manga_order():
    """Panels right to left (found from the gutters), inside a panel its bubbles, inside a bubble its
    columns right to left; without the panels the bubbles of the two panels would interleave by height."""
    panels = [(420, 20, 780, 980), (20, 20, 380, 980)]  # right panel, left panel
    # each bubble: two columns of one text size; the left panel's bubbles sit higher than the right's
    bubbles = {"右上": (600, 120, 664, 300), "右下": (520, 640, 584, 820),
               "左上": (200, 60, 264, 240), "左下": (80, 560, 144, 740)}
    img = _panel_page(panels, bubbles.values())
    lines = []
    for name, (x1, y1, x2, y2) in bubbles.items():
        lines += [vline(x1 + 34, y1 + 10, name + "いち"), vline(x1, y1 + 10, name + "に")]
    page = layout_page(lines, 800, 1000, image=img)
    assert len(page.blocks) == 4 and all(b.vertical for b in page.blocks)
    assert page.text.split("\n") == ["右上いち右上に", "右下いち右下に", "左上いち左上に", "左下いち左下に"]
    # the same lines without the page: no panels, the rows of bubbles interleave
    assert layout_page(lines, 800, 1000).text.split("\n")[:2] == ["右上いち右上に", "左上いち左上に"]


def test_panels_are_found_from_the_gutters_in_reading_order():
    from pipelines.layout import _Gutters, find_panels

    tiers = [(430, 20, 780, 480), (20, 20, 410, 480), (20, 500, 780, 980)]  # top right, top left, bottom
    img = _panel_page(tiers, [])
    g = _Gutters(img[:, :, 0], [])
    found = find_panels(g.blank, g.dark, rtl=True)
    assert len(found) == 3
    for (fx1, fy1, fx2, fy2), (x1, y1, x2, y2) in zip(found, tiers):  # each panel found within its border
        assert abs(fx1 - x1) <= 6 and abs(fy1 - y1) <= 6 and abs(fx2 - x2) <= 6 and abs(fy2 - y2) <= 6
    assert [p[0] for p in find_panels(g.blank, g.dark, rtl=False)[:2]] == [found[1][0], found[0][0]]


def _slanted_page(size=(800, 1000)):
    """A tier of two panels split by a slanted gutter: the right panel's left edge runs from x=470 at the top
    to x=350 at the bottom (the left panel's right edge 14 px to its left)."""
    import cv2

    w, h = size
    img = np.full((h, w, 3), 255, np.uint8)
    right = np.array([[470, 20], [780, 20], [780, 980], [350, 980]], np.int32)
    left = np.array([[20, 20], [456, 20], [336, 980], [20, 980]], np.int32)
    for poly in (right, left):
        cv2.fillPoly(img, [poly], (140, 140, 140))
        cv2.polylines(img, [poly], True, (0, 0, 0), 4)
    return img


def _bubble(img, box):
    import cv2

    x1, y1, x2, y2 = box
    centre, axes = ((x1 + x2) // 2, (y1 + y2) // 2), ((x2 - x1) // 2 + 14, (y2 - y1) // 2 + 14)
    cv2.ellipse(img, centre, axes, 0, 0, 360, (255, 255, 255), -1)
    cv2.ellipse(img, centre, axes, 0, 0, 360, (0, 0, 0), 3)


def test_panels_split_by_a_slanted_gutter_read_right_panel_first():
    """A slanted gutter (no straight row or column crosses the tier) still separates two panels: the right
    panel's two bubbles are read before the left panel's, although the left bubble lies between them in
    height (the order of the page cut into rows would be right top, left, right bottom)."""
    img = _slanted_page()
    bubbles = {"右上": (620, 100, 684, 280), "左": (200, 300, 264, 480), "右下": (480, 700, 544, 880)}
    for box in bubbles.values():
        _bubble(img, box)
    lines = []
    for name, (x1, y1, x2, y2) in bubbles.items():
        lines += [vline(x1 + 34, y1 + 10, name + "いち"), vline(x1, y1 + 10, name + "に")]
    page = layout_page(lines, 800, 1000, image=img)
    assert page.text.split("\n") == ["右上いち右上に", "右下いち右下に", "左いち左に"]
    # without the page (no gutters): rows first, the left bubble between the right panel's two
    assert layout_page(lines, 800, 1000).text.split("\n") == ["右上いち右上に", "左いち左に", "右下いち右下に"]


def test_a_white_stretch_of_a_drawing_is_not_a_slanted_gutter():
    """A slanted white band across one panel (through its border too) with no panel border beside it (a lit
    stretch of the art, 80 px wide) does not split the panel: its bubbles keep the order of rows."""
    import cv2

    img = _panel_page([(20, 20, 780, 980)], [])
    band = np.array([[445, 0], [525, 0], [315, 1000], [235, 1000]], np.int32)
    cv2.fillPoly(img, [band], (255, 255, 255))        # 80 px of white, leaning: no straight column is blank
    bubbles = {"右上": (620, 100, 684, 280), "左": (100, 300, 164, 480), "右下": (560, 700, 624, 880)}
    for box in bubbles.values():
        _bubble(img, box)
    lines = []
    for name, (x1, y1, x2, y2) in bubbles.items():
        lines += [vline(x1 + 34, y1 + 10, name + "いち"), vline(x1, y1 + 10, name + "に")]
    page = layout_page(lines, 800, 1000, image=img)
    assert page.text.split("\n") == ["右上いち右上に", "左いち左に", "右下いち右下に"]


def test_english_page_keeps_panels_left_to_right():
    panels = [(420, 20, 780, 980), (20, 20, 380, 980)]
    img = _panel_page(panels, [])
    lines = [hline(460, 300, "second panel"), hline(60, 60, "first panel"), hline(60, 700, "first again"),
             hline(460, 40, "second top")]
    page = layout_page(lines, 800, 1000, image=img)
    assert page.lang == "en"
    assert page.text.split("\n") == ["first panel", "first again", "second top", "second panel"]


def test_touching_bubbles_stay_two_blocks():
    """Two bubbles that touch (one white region): the left bubble's columns start lower, so they are not
    joined to the right bubble's, and each bubble's columns stay together."""
    lines = [vline(700, 100, "ところでさ"), vline(670, 100, "あのね"),        # right bubble, top-aligned
             vline(620, 160, "自分の分は"), vline(590, 160, "何買った")]      # left bubble, starts 2 chars lower
    page = layout_page(lines, 800, 1200)
    assert [b.texts for b in page.blocks] == [["ところでさ", "あのね"], ["自分の分は", "何買った"]]


def test_a_border_with_art_drawn_over_it_still_separates_panels():
    """Two stacked panels on the left; on the right a borderless panel whose art (grey, as hair or a hand)
    runs over the left panels' border for 6% of its length beside the text. The border still separates: the right panel's
    bubbles are read first, not the top row of bubbles across both."""
    import cv2

    img = np.full((1000, 800, 3), 255, np.uint8)
    img[20:980, 380:780] = 140                                   # the borderless right panel's art
    img[20:980, 20:380] = 140                                    # the left panels, one frame, a border between
    cv2.rectangle(img, (20, 20), (379, 979), (0, 0, 0), 4)
    img[498:502, 20:380] = 0
    img[300:340, 370:390] = 140                                  # art over the border: 40 px of the 660 beside the text
    bubbles = {"右上": (600, 100, 664, 280), "右下": (520, 600, 584, 780),
               "左上": (200, 60, 264, 240), "左下": (80, 560, 144, 740)}
    lines = []
    for name, (x1, y1, x2, y2) in bubbles.items():
        centre, axes = ((x1 + x2) // 2, (y1 + y2) // 2), ((x2 - x1) // 2 + 14, (y2 - y1) // 2 + 14)
        cv2.ellipse(img, centre, axes, 0, 0, 360, (255, 255, 255), -1)
        cv2.ellipse(img, centre, axes, 0, 0, 360, (0, 0, 0), 3)
        lines += [vline(x1 + 34, y1 + 10, name + "いち"), vline(x1, y1 + 10, name + "に")]
    page = layout_page(lines, 800, 1000, image=img)
    assert page.text.split("\n") == ["右上いち右上に", "右下いち右下に", "左上いち左上に", "左下いち左下に"]
