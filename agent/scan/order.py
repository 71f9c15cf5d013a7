"""The scan order: where known material most likely sits is read first.

Known material on a phone or stick sits in camera, download and messenger media folders, as
pictures and videos. The walk is best-first over a heap of pending directories and file batches,
keyed by a rank; equal ranks pop last-in first-out, so within a rank the walk is depth-first (few
directories open at once) and a directory's files come before its subdirectories.

The rule (docs/report.md repeats it):

* Every directory has a class: ``MEDIA`` (3) when its name is a camera, download, messenger or
  picture folder (``DCIM``, ``Camera``, ``Download``, ``Pictures``, ``WhatsApp Images``...),
  ``HINT`` (2) when media folders often sit below it (``Android``, ``media``, ``WhatsApp``...),
  ``LOW`` (0) for caches and app data (``cache``, ``.thumbnails``, ``node_modules``, ``obb``...),
  otherwise the class of its parent (``NORMAL`` (1) at the top).
* A subdirectory and the non-media files of a directory of class ``c`` have rank ``2c``; its
  picture and video files have rank ``2c + 1``.

So on a phone ``DCIM/Camera/*.jpg`` (rank 7) comes before ``Android/data`` (rank 0), and on a stick
the pictures of the top folder (rank 3) come before its other files (rank 2).

Example::

    >>> directory_class(b"DCIM", NORMAL), directory_class(b"2024", MEDIA), directory_class(b"cache", MEDIA)
    (3, 3, 0)
    >>> file_rank(b"IMG_0001.JPG", MEDIA), file_rank(b"notes.txt", NORMAL)
    (7, 2)
"""

from __future__ import annotations

LOW, NORMAL, HINT, MEDIA = 0, 1, 2, 3


def _folded(names: str) -> frozenset[str]:
    return frozenset(name.casefold() for name in names.split("|"))


MEDIA_FOLDERS = _folded(
    "DCIM|Camera|Camera Roll|Pictures|Photos|Images|Screenshots|Download|Downloads|Movies|Videos|Video|"
    "Saved Pictures|WhatsApp Images|WhatsApp Video|WhatsApp Animated Gifs|WhatsApp Documents|"
    "Telegram Images|Telegram Video|Telegram Documents|Signal|Snapchat|Instagram|Messenger|Viber|"
    "Threema|Kik|Wickr|Screen recordings|Bluetooth|Sent|Private|Hidden|PhotoData|MobileSlideShow|Desktop"
)
HINT_FOLDERS = _folded(
    "Android|media|WhatsApp|Telegram|com.whatsapp|org.telegram.messenger|Internal storage|"
    "Internal shared storage|sdcard|emulated|0|Users|home|Documents|Library"
)
LOW_FOLDERS = _folded(
    "cache|.cache|caches|code_cache|.thumbnails|thumbnails|node_modules|.git|obb|data|databases|fonts|"
    "System Volume Information|$RECYCLE.BIN|site-packages|__pycache__|proc|sys|lib|usr|bin|Windows"
)
MEDIA_EXTENSIONS = frozenset(
    ext.encode()
    for ext in _folded(
        "jpg|jpeg|jpe|jfif|png|gif|bmp|webp|heic|heif|tif|tiff|dng|raw|avif|"
        "mp4|m4v|mov|3gp|3g2|avi|mkv|webm|wmv|flv|mpg|mpeg|ts|mts"
    )
)


_DOTTED_MEDIA_EXTENSIONS = frozenset(b"." + ext for ext in MEDIA_EXTENSIONS)


def directory_class(name: bytes, parent_class: int) -> int:
    """The class of a directory called ``name`` below one of ``parent_class``."""
    folded = name.decode("utf-8", "replace").casefold()
    if folded in MEDIA_FOLDERS or folded.endswith("apple"):  # iOS camera rolls: DCIM/100APPLE
        return MEDIA
    if folded in LOW_FOLDERS:
        return LOW
    if folded in HINT_FOLDERS:
        return max(HINT, parent_class)
    return parent_class


def is_media_name(name: bytes) -> bool:
    """True for picture and video file names (by extension, case-insensitive)."""
    dot = name.rfind(b".")
    return dot >= 0 and name[dot + 1 :].lower() in MEDIA_EXTENSIONS


def split_media(names: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """``names`` split into (others, picture and video names), each in the order given; the same
    test as ``is_media_name`` in one loop (a name without a dot gives its last byte: never a match).
    """
    plain: list[bytes] = []
    media: list[bytes] = []
    dotted = _DOTTED_MEDIA_EXTENSIONS
    for name in names:
        (media if name[name.rfind(b".") :].lower() in dotted else plain).append(name)
    return plain, media


def directory_rank(directory_class_: int) -> int:
    return 2 * directory_class_


def file_rank(name: bytes, parent_class: int) -> int:
    return 2 * parent_class + (1 if is_media_name(name) else 0)
