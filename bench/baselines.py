"""Reference servers for bench/webhook.py (not part of the product).

(a) ``bare``: an aiohttp handler returning a fixed XML reply.
(b) ``wechatpy``: the minimal wechatpy safe-mode pipeline with no store: check the
    URL signature, decrypt, parse, render a text reply, encrypt.
"""

from __future__ import annotations

import argparse

from aiohttp import web
from wechatpy import create_reply, parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.utils import check_signature

FIXED = (
    "<xml><ToUserName><![CDATA[o_user]]></ToUserName><FromUserName><![CDATA[gh_x]]></FromUserName>"
    "<CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType>"
    "<Content><![CDATA[请直接输入您想对社区说的话。]]></Content></xml>"
)


def build(mode: str, token: str, aes_key: str, app_id: str) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    crypto = WeChatCrypto(token, aes_key, app_id)

    async def bare(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text=FIXED, content_type="application/xml")

    async def wechatpy_safe(request: web.Request) -> web.Response:
        q = request.query
        body = await request.read()
        check_signature(token, q["signature"], q["timestamp"], q["nonce"])
        xml = crypto.decrypt_message(body, q["msg_signature"], q["timestamp"], q["nonce"])
        msg = parse_message(xml)
        reply = create_reply("请直接输入您想对社区说的话。", msg).render()
        return web.Response(
            text=crypto.encrypt_message(reply, q["nonce"], q["timestamp"]),
            content_type="application/xml",
        )

    app.router.add_post("/wechat", bare if mode == "bare" else wechatpy_safe)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["bare", "wechatpy"], required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--aes-key", required=True)
    parser.add_argument("--app-id", required=True)
    args = parser.parse_args()
    app = build(args.mode, args.token, args.aes_key, args.app_id)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
