"""``python -m bot chat``: talk to the real server as a resident, no WeChat account needed.

The simulator starts the real app on loopback and a local fake of the WeChat
API, then sends what WeChat would send: signed (and with ``--aes`` encrypted)
XML to ``POST /wechat``. It prints each passive reply and every message the bot
sends later through the API (customer-service sends), so late answers show too.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import string
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import replace

import aiohttp
from aiohttp import web

from bot.app import create_app
from bot.config import Config
from bot.wechat.crypto import MessageCrypto
from bot.wechat.fake_api import FakeWeChatAPI
from bot.wechat.replies import cdata
from bot.wechat.signature import msg_signature, url_signature

HELP = """命令（其余输入都当作文字消息发送）：
  /voice 文字        发一条语音（带微信语音识别结果）
  /location 纬度 经度 [地点]   发送位置
  /image            发一张图片
  /scan 场景值       扫带参数二维码（已关注）
  /click 按钮KEY     点击自定义菜单
  /follow /unfollow 关注 / 取消关注
  /help /quit"""


class SimulatedResident:
    """Builds and posts inbound pushes exactly as WeChat's servers would."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        token: str,
        app_id: str,
        openid: str,
        crypto: MessageCrypto | None = None,
        account: str = "gh_gongzhi_demo",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._session = session
        self._url = url
        self._token = token
        self._crypto = crypto
        self.openid = openid
        self._account = account
        self._clock = clock
        # Random 62-bit start: two simulated residents (say, one per server process in a
        # test) must never share a MsgId, or the second message is rightly seen as a retry.
        self._ids = itertools.count(secrets.randbits(62))
        self._last_event_time = 0

    def xml(self, msg_type: str, fields: Mapping[str, str | int | float]) -> str:
        created = int(self._clock())
        if msg_type == "event":
            # Events carry no MsgId: WeChat's retries are told apart by the second they
            # were created in, so a person's distinct events never share one.
            created = max(created, self._last_event_time + 1)
            self._last_event_time = created
        parts = [
            f"<ToUserName>{cdata(self._account)}</ToUserName>",
            f"<FromUserName>{cdata(self.openid)}</FromUserName>",
            f"<CreateTime>{created}</CreateTime>",
            f"<MsgType>{cdata(msg_type)}</MsgType>",
        ]
        for name, value in fields.items():
            text = cdata(value) if isinstance(value, str) else str(value)
            parts.append(f"<{name}>{text}</{name}>")
        if msg_type != "event":
            parts.append(f"<MsgId>{next(self._ids)}</MsgId>")
        return "<xml>" + "".join(parts) + "</xml>"

    async def post(self, xml: str) -> tuple[int, str]:
        """POST one push; returns the status and the reply's plaintext body."""
        timestamp = str(int(self._clock()))
        nonce = "".join(secrets.choice(string.digits) for _ in range(10))
        query = {
            "signature": url_signature(self._token, timestamp, nonce),
            "timestamp": timestamp,
            "nonce": nonce,
            "openid": self.openid,
        }
        body = xml.encode("utf-8")
        if self._crypto is not None:
            encrypted = self._crypto.encrypt_payload(body)
            query["encrypt_type"] = "aes"
            query["msg_signature"] = msg_signature(self._token, timestamp, nonce, encrypted)
            body = (
                f"<xml><ToUserName>{cdata(self._account)}</ToUserName>"
                f"<Encrypt>{cdata(encrypted)}</Encrypt></xml>"
            ).encode()
        async with self._session.post(self._url, params=query, data=body) as resp:
            text = await resp.text()
            if resp.status == 200 and self._crypto is not None and text.startswith("<xml>"):
                encrypted_reply = ET.fromstring(text).findtext("Encrypt") or ""
                text = self._crypto.decrypt_payload(encrypted_reply).decode("utf-8")
            return resp.status, text

    async def say(self, text: str) -> str | None:
        return reply_text(await self.post(self.xml("text", {"Content": text})))

    async def event(self, event: str, **fields: str | float) -> str | None:
        return reply_text(await self.post(self.xml("event", {"Event": event, **fields})))

    async def send(self, msg_type: str, **fields: str | float) -> str | None:
        return reply_text(await self.post(self.xml(msg_type, fields)))


def reply_text(result: tuple[int, str]) -> str | None:
    """What the resident would read: the text (or article title) of a passive reply."""
    status, body = result
    if status != 200:
        raise RuntimeError(f"server answered HTTP {status}: {body[:200]}")
    if body in ("", "success"):
        return None
    root = ET.fromstring(body)
    if root.findtext("MsgType") == "news":
        return root.findtext("Articles/item/Title")
    return root.findtext("Content")


def _command(resident: SimulatedResident, line: str) -> tuple[str, dict[str, str | float]] | None:
    name, _, rest = line.partition(" ")
    args = rest.split()
    if name == "/voice":
        return "voice", {"MediaId": "sim_voice", "Format": "amr", "Recognition": rest}
    if name == "/location" and len(args) >= 2:
        label = " ".join(args[2:])
        return "location", {
            "Location_X": float(args[0]),
            "Location_Y": float(args[1]),
            "Scale": 15,
            "Label": label,
        }
    if name == "/image":
        return "image", {"PicUrl": "http://example.invalid/sim.jpg", "MediaId": "sim_image"}
    if name == "/scan" and args:
        return "event", {"Event": "SCAN", "EventKey": args[0], "Ticket": "sim_ticket"}
    if name == "/click" and args:
        return "event", {"Event": "CLICK", "EventKey": args[0]}
    if name == "/follow":
        return "event", {"Event": "subscribe", "EventKey": ""}
    if name == "/unfollow":
        return "event", {"Event": "unsubscribe", "EventKey": ""}
    return None


async def run_chat(
    config: Config,
    *,
    aes: bool,
    openid: str,
    data_dir: str | None,
    read_line: Callable[[str], str] = input,
    write: Callable[[str], None] = print,
) -> int:
    fake = FakeWeChatAPI(app_id=config.wechat.app_id, app_secret=config.wechat.app_secret)
    api_url = await fake.start()
    key = config.wechat.encoding_aes_key
    if aes and not key:
        key = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(43))
    with tempfile.TemporaryDirectory(prefix="gongzhi-chat-") as tmp:
        config = replace(
            config,
            wechat=replace(
                config.wechat, api_base_url=api_url, encoding_aes_key=key if aes else ""
            ),
            storage=replace(config.storage, path=data_dir or tmp),
        )
        runner = web.AppRunner(create_app(config), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        crypto = MessageCrypto(config.wechat.token, key, config.wechat.app_id) if aes else None
        seen_calls = 0

        def show_api_messages() -> None:
            nonlocal seen_calls
            for call in fake.calls[seen_calls:]:
                if call.api == "custom_send" and isinstance(call.body, dict):
                    content = call.body.get("text", {}).get("content", "")
                    write(f"机器人（客服消息）> {content}")
            seen_calls = len(fake.calls)

        try:
            async with aiohttp.ClientSession() as session:
                resident = SimulatedResident(
                    session,
                    f"http://127.0.0.1:{port}/wechat",
                    token=config.wechat.token,
                    app_id=config.wechat.app_id,
                    openid=openid,
                    crypto=crypto,
                )
                mode = "安全模式（AES 加密）" if aes else "明文模式"
                write(f"共治 bot 模拟聊天：您是居民 {openid}，{mode}。输入 /help 查看命令。")
                write(f"机器人> {await resident.event('subscribe', EventKey='')}")
                printer = asyncio.create_task(_poll(show_api_messages), name="chat-printer")
                while True:
                    try:
                        line = (await asyncio.to_thread(read_line, "您> ")).strip()
                    except EOFError:
                        break
                    if line in ("/quit", "/exit"):
                        break
                    if line == "/help":
                        write(HELP)
                        continue
                    if not line:
                        continue
                    command = _command(resident, line) if line.startswith("/") else None
                    if command is None:
                        reply = await resident.say(line)
                    else:
                        reply = await resident.send(command[0], **command[1])
                    write(f"机器人> {reply}" if reply else "机器人> （没有回复）")
                printer.cancel()
                await asyncio.gather(printer, return_exceptions=True)
                show_api_messages()
        finally:
            await runner.cleanup()
            await fake.stop()
    return 0


async def _poll(show: Callable[[], None], every: float = 0.2) -> None:
    # Late replies arrive while the resident is typing: show them as they come.
    while True:
        show()
        await asyncio.sleep(every)
