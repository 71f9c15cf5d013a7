"""order: the ranking rule."""

from __future__ import annotations

from agent.scan.order import HINT, LOW, MEDIA, NORMAL, directory_class, file_rank, is_media_name


def test_directory_classes() -> None:
    assert directory_class(b"DCIM", NORMAL) == MEDIA
    assert directory_class(b"camera", LOW) == MEDIA
    assert directory_class(b"100APPLE", NORMAL) == MEDIA
    assert directory_class(b"WhatsApp Images", HINT) == MEDIA
    assert directory_class(b"Android", NORMAL) == HINT
    assert directory_class(b"media", MEDIA) == MEDIA  # a hint never lowers a media folder
    assert directory_class(b"cache", MEDIA) == LOW
    assert directory_class(b"2024-05", MEDIA) == MEDIA  # inherits
    assert directory_class(b"\xff\xfe", NORMAL) == NORMAL  # undecodable names are fine


def test_media_files_rank_above_other_files_and_media_folders_above_all() -> None:
    assert is_media_name(b"IMG_1.JPG") and is_media_name(b"a.b.mp4") and not is_media_name(b"jpg")
    assert file_rank(b"a.jpg", NORMAL) > file_rank(b"a.txt", NORMAL)
    assert file_rank(b"a.txt", MEDIA) > file_rank(b"a.jpg", NORMAL)
