"""Drives an unmodified client library against keygate's gateway, as a bot would.

Run by crates/keygate/tests/cli/bots.rs with the virtual environment that scripts/python-env
makes. Usage: bots.py LIBRARY, LIBRARY one of ccxt-binance, ccxt-okx, python-binance,
python-okx. Everything else comes from the environment, never the command line:

  KG_URL            keygate's gateway, such as http://127.0.0.1:8620
  KG_VENUE          the keygate venue name (binance-main, okx-main)
  KG_API_KEY, KG_API_SECRET, KG_API_PASSPHRASE   the native key `keygate token issue --native` printed
  KG_COLD           the address-book destination for withdrawals
  KG_SMALL, KG_BIG  a withdrawal inside the limits, and one over a cap

Each step's outcome is printed as one JSON object on stdout; a step that raises records the
exception's class (and its ccxt base classes) and message instead of stopping the script.
"""

import json
import os
import sys
import traceback

LIB = sys.argv[1]
URL = os.environ["KG_URL"]
VENUE = os.environ["KG_VENUE"]
BASE = URL + "/venues/" + VENUE
KEY = os.environ["KG_API_KEY"]
SECRET = os.environ["KG_API_SECRET"]
PASSPHRASE = os.environ.get("KG_API_PASSPHRASE", "")
COLD = os.environ["KG_COLD"]
SMALL = os.environ["KG_SMALL"]
BIG = os.environ["KG_BIG"]

out = {"library": LIB}


def step(name, fn):
    try:
        out[name] = {"ok": fn()}
    except Exception as e:  # the point: record what the library raised
        out[name] = {
            "error": type(e).__name__,
            "classes": [c.__name__ for c in type(e).__mro__],
            "message": str(e),
            "trace": traceback.format_exc(limit=3),
        }
    return out[name].get("ok")


def ccxt_binance():
    import ccxt

    ex = ccxt.binance({"apiKey": KEY, "secret": SECRET,
                       "options": {"fetchMarkets": {"types": ["spot"]}, "fetchMargins": False}})
    for name, url in ex.urls["api"].items():
        if isinstance(url, str):
            # every Binance host (api., sapi, fapi, ...) points at keygate's venue
            rest = url.split("://", 1)[1].split("/", 1)[1]
            ex.urls["api"][name] = BASE + "/" + rest
    step("balance", lambda: str(ex.fetch_balance()["USDT"]["free"]))
    order = step("order", lambda: ex.create_order("BTC/USDT", "limit", "buy", 0.01, 40000)["id"])
    step("cancel", lambda: ex.cancel_order(order, "BTC/USDT")["status"])
    step("withdraw", lambda: ex.withdraw("USDT", float(SMALL), COLD)["id"])
    step("withdraw_big", lambda: ex.withdraw("USDT", float(BIG), COLD)["id"])


def ccxt_okx():
    import ccxt

    ex = ccxt.okx({"apiKey": KEY, "secret": SECRET, "password": PASSPHRASE,
                   "options": {"fetchMarkets": {"types": ["spot"]}, "createOrder": "privatePostTradeOrder"}})
    ex.urls["api"]["rest"] = BASE
    step("balance", lambda: str(ex.fetch_balance()["USDT"]["free"]))
    order = step("order", lambda: ex.create_order("BTC/USDT", "limit", "buy", 0.01, 40000)["id"])
    step("cancel", lambda: ex.cancel_order(order, "BTC/USDT")["id"])
    step("withdraw", lambda: ex.withdraw("USDT", float(SMALL), COLD)["id"])
    step("withdraw_big", lambda: ex.withdraw("USDT", float(BIG), COLD)["id"])


def python_binance():
    from binance.client import Client

    Client.API_URL = BASE + "/api"
    Client.MARGIN_API_URL = BASE + "/sapi"
    clients = []
    # The constructor pings the venue (GET /api/v3/ping, with the API key but unsigned).
    step("connect", lambda: clients.append(Client(KEY, SECRET)) or "connected")
    if not clients:
        return
    client = clients[0]
    step("balance", lambda: client.get_asset_balance(asset="USDT")["free"])
    order = step("order", lambda: client.create_order(
        symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.01", price="40000")["orderId"])
    step("cancel", lambda: client.cancel_order(symbol="BTCUSDT", orderId=order)["status"])
    step("withdraw", lambda: client.withdraw(coin="USDT", address=COLD, amount=SMALL)["id"])
    step("withdraw_big", lambda: client.withdraw(coin="USDT", address=COLD, amount=BIG)["id"])


def python_okx():
    import okx.Account
    import okx.Funding
    import okx.Trade

    # flag "0": live trading; keygate refuses demo trading ("1") against its venue.
    account = okx.Account.AccountAPI(KEY, SECRET, PASSPHRASE, False, "0", domain=BASE, debug=False)
    trade = okx.Trade.TradeAPI(KEY, SECRET, PASSPHRASE, False, "0", domain=BASE, debug=False)
    funding = okx.Funding.FundingAPI(KEY, SECRET, PASSPHRASE, False, "0", domain=BASE, debug=False)

    def checked(answer):
        # python-okx returns the venue's JSON as it is; an error is a code other than "0".
        if answer.get("code") != "0":
            raise RuntimeError("code=%s msg=%s" % (answer.get("code"), answer.get("msg")))
        return answer["data"]

    def balance():
        details = checked(account.get_account_balance())[0]["details"]
        return [d["availBal"] for d in details if d["ccy"] == "USDT"][0]

    step("balance", balance)
    order = step("order", lambda: checked(trade.place_order(
        instId="BTC-USDT", tdMode="cash", side="buy", ordType="limit", sz="0.01", px="40000"))[0]["ordId"])
    step("cancel", lambda: checked(trade.cancel_order(instId="BTC-USDT", ordId=order))[0]["ordId"])
    step("withdraw", lambda: checked(funding.withdrawal(ccy="USDT", amt=SMALL, dest="4", toAddr=COLD))[0]["wdId"])
    big = funding.withdrawal(ccy="USDT", amt=BIG, dest="4", toAddr=COLD)
    out["withdraw_big"] = {"answer": big}


{"ccxt-binance": ccxt_binance, "ccxt-okx": ccxt_okx,
 "python-binance": python_binance, "python-okx": python_okx}[LIB]()
print(json.dumps(out))
