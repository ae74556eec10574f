"""Safe/compatible mode message encryption (WeChat's AES-256-CBC frame).

Frame: 16 random bytes + message length (4 bytes, big-endian) + message + app id,
PKCS#7-padded to a multiple of 32 bytes (not AES's 16), encrypted with AES-256-CBC
where the key is ``base64(EncodingAESKey + "=")`` and the IV is the key's first 16
bytes, then base64-encoded. ``msg_signature`` covers the base64 text.
"""

from __future__ import annotations

import binascii
import os
import re
import threading

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bot.errors import ConfigError, MalformedMessage, SignatureError
from bot.wechat.replies import cdata
from bot.wechat.signature import check_msg_signature, msg_signature

BLOCK_SIZE = 32
_AES_BLOCK = 16  # AES's own block, which CBC chains on (WeChat pads to 32 regardless)
_RANDOM_LEN = 16
_HEADER_LEN = _RANDOM_LEN + 4
_ENCODING_AES_KEY = re.compile(r"[A-Za-z0-9]{43}")
# Precomputed so a reply's padding is a lookup, not a fresh bytes object per call.
_PADDING = tuple(bytes([n]) * n for n in range(BLOCK_SIZE + 1))


def validate_encoding_aes_key(key: str) -> None:
    """Raise ``ConfigError`` unless ``key`` is a well-formed EncodingAESKey."""
    _aes_key(key)


def _aes_key(key: str) -> bytes:
    if not isinstance(key, str) or _ENCODING_AES_KEY.fullmatch(key) is None:
        length = len(key) if isinstance(key, str) else type(key).__name__
        raise ConfigError(
            "EncodingAESKey must be exactly 43 characters of A-Z, a-z and 0-9 "
            f"(got {length}); copy it from the Official Account's developer settings"
        )
    # 43 base64 characters plus "=" always decode to exactly 32 bytes.
    return binascii.a2b_base64(key + "=")


class MessageCrypto:
    """Encrypt replies and decrypt pushes for one Official Account.

    Build it once at start-up. Creating an OpenSSL cipher context costs several times
    the AES work on a whole message, so one encrypting and one decrypting CBC context
    live as long as this object and are fed message after message; see
    :meth:`encrypt_payload` and :meth:`decrypt_payload` for why the running chain does
    not change a single output byte.
    """

    __slots__ = ("_app_id_bytes", "_chain", "_decryptor", "_encryptor", "_iv", "_lock", "_token")

    def __init__(self, token: str, encoding_aes_key: str, app_id: str) -> None:
        key = _aes_key(encoding_aes_key)
        self._token = token
        self._app_id_bytes = app_id.encode("utf-8")
        cipher = Cipher(algorithms.AES(key), modes.CBC(key[:16]))
        self._encryptor = cipher.encryptor()
        self._decryptor = cipher.decryptor()
        self._iv = int.from_bytes(key[:16], "big")
        # The block the encrypting context XORs into its next input: the IV at first,
        # then the last ciphertext block it produced.
        self._chain = self._iv
        # The contexts are stateful; a lock keeps them whole if the object is ever
        # shared with worker threads (uncontended on the event loop, ~0.1 µs).
        self._lock = threading.Lock()

    # -- inbound ----------------------------------------------------------
    def decrypt(self, encrypt: str, msg_signature: str, timestamp: str, nonce: str) -> bytes:
        """The inner message bytes of a push whose ``Encrypt`` text is ``encrypt``.

        The signature is checked first, so nobody without the token reaches the
        AES code with chosen ciphertext.
        """
        check_msg_signature(self._token, msg_signature, timestamp, nonce, encrypt)
        return self.decrypt_payload(encrypt)

    def decrypt_payload(self, encrypt: str) -> bytes:
        """Decrypt ``encrypt`` without the signature check (use :meth:`decrypt`)."""
        try:
            # strict: WeChat sends canonical base64; anything else is not from WeChat.
            ciphertext = binascii.a2b_base64(encrypt, strict_mode=True)
        except ValueError as exc:  # binascii.Error, and non-ASCII str
            raise MalformedMessage("bad_ciphertext", "not base64") from exc
        size = len(ciphertext)
        if size == 0 or size % BLOCK_SIZE:
            raise MalformedMessage("bad_ciphertext", f"{size} bytes is not whole blocks")
        # The shared context chains from the previous message's last block instead of
        # the IV, which only garbles the first 16 plaintext bytes: the random prefix,
        # never read.
        with self._lock:
            frame = self._decryptor.update(ciphertext)

        pad = frame[-1]
        if not 1 <= pad <= BLOCK_SIZE or frame[-pad:] != _PADDING[pad]:
            raise MalformedMessage("bad_ciphertext", "bad padding")
        end = size - pad
        if end < _HEADER_LEN:
            raise MalformedMessage("bad_ciphertext", "frame too short")
        msg_len = int.from_bytes(frame[_RANDOM_LEN:_HEADER_LEN], "big")
        msg_end = _HEADER_LEN + msg_len
        if msg_end > end:
            raise MalformedMessage("bad_ciphertext", "length field out of range")
        if frame[msg_end:end] != self._app_id_bytes:
            raise SignatureError("bad_app_id")
        return frame[_HEADER_LEN:msg_end]

    # -- outbound ---------------------------------------------------------
    def encrypt(self, reply_xml: str, nonce: str, timestamp: str) -> str:
        """The encrypted reply envelope for ``reply_xml`` (the body to answer with)."""
        encrypted = self.encrypt_payload(reply_xml.encode("utf-8"))
        signature = msg_signature(self._token, timestamp, nonce, encrypted)
        # encrypted and signature are base64/hex; only the echoed nonce and timestamp
        # come from the request, so only they need quoting.
        return (
            f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt>"
            f"<MsgSignature><![CDATA[{signature}]]></MsgSignature>"
            f"<TimeStamp>{_escape_text(timestamp)}</TimeStamp>"
            f"<Nonce>{cdata(nonce)}</Nonce></xml>"
        )

    def encrypt_payload(self, message: bytes, random_prefix: bytes | None = None) -> str:
        """The base64 ``Encrypt`` text for ``message``.

        ``random_prefix`` (16 bytes) exists for the deterministic test vectors only.
        """
        if random_prefix is None:
            # ASCII like the official samples, in case a receiver decodes the frame as text.
            random_prefix = os.urandom(_RANDOM_LEN // 2).hex().encode("ascii")
        elif len(random_prefix) != _RANDOM_LEN:
            raise ValueError(f"random_prefix must be {_RANDOM_LEN} bytes")
        size = _HEADER_LEN + len(message) + len(self._app_id_bytes)
        pad = BLOCK_SIZE - size % BLOCK_SIZE
        first = int.from_bytes(random_prefix, "big")
        with self._lock:
            # A fresh CBC context would compute E(prefix ^ IV) for the first block; the
            # long-lived one computes E(input ^ chain). Feeding prefix ^ IV ^ chain makes
            # the two equal, and every later block chains from there as usual.
            head = (first ^ self._iv ^ self._chain).to_bytes(_AES_BLOCK, "big")
            ciphertext = self._encryptor.update(
                b"".join(
                    (
                        head,
                        len(message).to_bytes(4, "big"),
                        message,
                        self._app_id_bytes,
                        _PADDING[pad],
                    )
                )
            )
            self._chain = int.from_bytes(ciphertext[-_AES_BLOCK:], "big")
        return binascii.b2a_base64(ciphertext, newline=False).decode("ascii")


def _escape_text(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;")
