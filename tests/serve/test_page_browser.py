"""The web chat page end to end, in real headless Chromium (Debian's, driven by Playwright), on the real
app (the API's FastAPI app with the page mounted at /ui, as `qlorafx serve --ui` builds it) on a free
127.0.0.1 port, with the tiny runs' engine: an answer streams in and Stop really stops it (the text
stops growing, the engine's row ends cancelled, the next message is answered); another model gives
that model's answer; side by side; errors in the page; an answer corrected by hand, rendered as
Markdown, kept and read back by `qlorafx preprocess`. The page contacts no host but the server.

Where Playwright or Chromium is missing the tests skip with the reason; `make test` installs both.
docs/web-chat.png is this test's screenshot of the page, rewritten when run with QLORAFX_UPDATE_DOCS=1."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from qlorafx.cli.main import main
from qlorafx.infer.generate import Sampling
from tests.infer.finished import finished_chat_run, served_engine

CHROMIUM = Path("/usr/bin/chromium")
DOCS = Path(__file__).resolve().parents[2] / "docs"
QUESTION = "What color is a leaf?"
MAX_NEW = 24  # the page's default in these tests; greedy
pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")  # pandas deprecations inside gradio
CORRECTED = "Green, from chlorophyll:\n\n```python\nprint('leaf is green')\n```"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return served_engine(tmp_path_factory)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        pytest.skip("the browser tests need Playwright's Python package: pip install -e '.[dev]'")
    if not CHROMIUM.is_file():
        pytest.skip(f"the browser tests need Chromium at {CHROMIUM}: apt-get install chromium "
                    f"(make test installs it when run as root)")
    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        except Error as err:
            pytest.skip(f"Chromium at {CHROMIUM} does not start here: {str(err).splitlines()[0]}")
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def site(engine, browser, tmp_path_factory):
    """The page's server, started once for the module: `qlorafx serve --ui`'s app on a thread."""
    from qlorafx.serve.app import create_app
    from qlorafx.serve.kept import KeptChats
    from qlorafx.serve.page import mount_page
    from qlorafx.serve.server import ThreadedServer
    from qlorafx.serve.webchat import Options, WebChat

    kept = KeptChats(tmp_path_factory.mktemp("kept") / "chats.jsonl")
    app = create_app(engine)
    mount_page(app, WebChat(engine, kept, Options(temperature=0, max_new_tokens=MAX_NEW)))
    server = ThreadedServer(app)
    yield server.url, kept.path
    server.stop()


@pytest.fixture
def page(site, browser):
    """A fresh tab on the page; afterwards, every request it made went to the server and nowhere else."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    tab = context.new_page()
    hosts = set()
    tab.on("request", lambda request: hosts.add(urlparse(request.url).netloc))
    tab.goto(f"{site[0]}/ui/")
    tab.wait_for_selector("#chat-message textarea")
    yield tab
    context.close()
    assert hosts <= {urlparse(site[0]).netloc}, f"the page contacted other hosts: {hosts}"



# -- driving the page ------------------------------------------------------------------------------


def send(tab, where: str, text: str) -> None:
    fill(tab, f"#{where}-message textarea", text)
    tab.press(f"#{where}-message textarea", "Enter")


def wait_text(tab, selector: str, pattern: str, timeout: float = 60_000) -> str:
    from playwright.sync_api import TimeoutError

    try:
        tab.wait_for_function("([s, p]) => { const e = document.querySelector(s); "
                              "return e && new RegExp(p).test(e.innerText) }", arg=[selector, pattern], timeout=timeout)
    except TimeoutError:
        raise AssertionError(f"{selector} never matched {pattern!r}; it shows {tab.inner_text(selector)!r}") from None
    return tab.inner_text(selector)


def answer(tab, bot: str) -> str:
    """The last answer the chatbot shows, as text."""
    answers = tab.locator(f"#{bot} [data-testid=bot]")
    return answers.last.inner_text() if answers.count() else ""


def choose(tab, dropdown: str, name: str) -> None:
    tab.click(f"#{dropdown} input")
    tab.get_by_role("option", name=name, exact=True).click()
    assert tab.input_value(f"#{dropdown} input") == name


def open_settings(tab) -> None:
    """Opens the settings; their widgets are mounted on the first opening, so wait for them, or what is
    typed in meanwhile may be reset by the mount."""
    if not tab.is_visible("#system textarea"):
        tab.click("#settings .label-wrap")
    tab.wait_for_selector("#system textarea", state="visible")
    tab.wait_for_selector("#max_new_tokens input[type=number]", state="visible")


def fill(tab, selector: str, text: str) -> None:
    """Types into a field until it holds the text: a widget that has just been mounted (the settings
    are mounted when first opened) can be replaced by its finished self after the first typing."""
    for _ in range(20):
        tab.fill(selector, text)
        time.sleep(0.25)
        if tab.input_value(selector) == text:
            return
    raise AssertionError(f"{selector} does not keep the text typed into it: it holds {tab.input_value(selector)!r}")


def set_max_new_tokens(tab, value: int) -> None:
    open_settings(tab)
    fill(tab, "#max_new_tokens input[type=number]", str(value))
    tab.press("#max_new_tokens input[type=number]", "Enter")


def words(text: str) -> str:
    """The words of a text, which its rendering as Markdown keeps (its markup characters it may not)."""
    return " ".join(re.sub(r"[^\w]+", " ", text).split())


def direct(engine, model: str, messages: list[dict], max_new_tokens: int = MAX_NEW) -> str:
    """The engine's own answer (as the API gives it) to these messages."""
    return engine.submit(model, engine.encode_chat(model, messages), Sampling(max_new_tokens=max_new_tokens)).result().text


# -- the tests ---------------------------------------------------------------------------------------


def long_answerer(engine) -> str:
    """A model whose greedy answer to QUESTION runs to the model's last position without an end of
    turn, so that Stop always lands mid-answer (the tiny models' answers change with each training)."""
    for model in ("alpaca", "chat"):
        encoded = engine.encode_chat(model, [{"role": "user", "content": QUESTION}])
        if engine.submit(model, encoded, Sampling(max_new_tokens=engine.room(encoded))).result().finish_reason == "length":
            return model
    pytest.fail("neither tiny model answers at length without an end of turn: Stop cannot be shown mid-answer")


def test_an_answer_streams_in_and_stop_really_stops_it(page, engine, recorded, site):
    model = long_answerer(engine)
    recorded.clear()
    choose(page, "model", model)
    set_max_new_tokens(page, engine.context_length)  # as many as fit: hundreds of tokens, seconds of generating
    send(page, "chat", QUESTION)
    page.wait_for_function("() => { const a = document.querySelectorAll('#chat-bot [data-testid=bot]'); "
                           "return a.length && a[a.length - 1].innerText.length > 0 }")
    first = len(answer(page, "chat-bot"))
    page.wait_for_function(f"() => {{ const a = document.querySelectorAll('#chat-bot [data-testid=bot]'); "
                           f"return a[a.length - 1].innerText.length > {first} }}")  # it grows piece by piece
    assert "generating" in page.inner_text("#status")
    page.click("#chat-stop")
    status = wait_text(page, "#status", r"tokens, stopped \(")
    row = recorded[0]
    assert row.completion.finish_reason == "cancelled" and len(row.ids) < row.sampling.max_new_tokens
    assert status.startswith(f"{model}: {len(row.ids)} tokens, stopped (")
    stopped = answer(page, "chat-bot")
    time.sleep(1.0)
    assert answer(page, "chat-bot") == stopped and words(stopped) == words(row.completion.text)  # it stopped growing
    page.click("#chat-keep")  # what the page holds is the partial answer itself
    wait_text(page, "#status", "kept 1 exchange")
    assert json.loads(site[1].read_text().splitlines()[-1])["messages"][-1]["content"] == row.completion.text

    set_max_new_tokens(page, 8)  # the engine is free: the next message is answered in full
    send(page, "chat", "And the sky?")
    wait_text(page, "#status", rf"^{model}: \d+ tokens, (finished|stopped at the token limit)")
    assert recorded[1].completion.finish_reason in ("stop", "length")
    assert len(page.locator("#chat-bot [data-testid=bot]").all()) == 2  # the stopped answer stays in the history


def test_another_model_answers_with_its_own_answer(page, engine):
    question = [{"role": "user", "content": QUESTION}]
    send(page, "chat", QUESTION)
    wait_text(page, "#status", r"^alpaca: \d+ tokens")
    from_alpaca = answer(page, "chat-bot")
    page.click("#chat-new")
    choose(page, "model", "chat")
    send(page, "chat", QUESTION)
    wait_text(page, "#status", r"^chat: \d+ tokens")
    from_chat = answer(page, "chat-bot")
    assert words(from_alpaca) == words(direct(engine, "alpaca", question))
    assert words(from_chat) == words(direct(engine, "chat", question))
    assert words(from_alpaca) != words(from_chat)


def test_a_model_loaded_while_serving_is_offered_when_the_page_opens(site, browser, engine, tmp_path_factory):
    engine.load_adapter(finished_chat_run(tmp_path_factory), "chat.v2")  # as POST /v1/load_lora_adapter does
    context = browser.new_context()
    try:
        tab = context.new_page()
        tab.goto(f"{site[0]}/ui/")
        tab.wait_for_selector("#chat-message textarea")
        choose(tab, "model", "chat.v2")
        send(tab, "chat", QUESTION)
        wait_text(tab, "#status", r"^chat\.v2: \d+ tokens")
    finally:
        context.close()
        engine.unload_adapter("chat.v2")


def test_side_by_side_sends_one_message_to_two_models(page, engine):
    page.get_by_role("tab", name="Side by side").click()
    assert page.input_value("#left-model input") == "alpaca" and page.input_value("#right-model input") == "chat"
    send(page, "both", QUESTION)
    wait_text(page, "#both-status", r"^alpaca: \d+ tokens.*; chat: \d+ tokens")
    question = [{"role": "user", "content": QUESTION}]
    left, right = answer(page, "left-bot"), answer(page, "right-bot")
    assert words(left) == words(direct(engine, "alpaca", question))
    assert words(right) == words(direct(engine, "chat", question))


def test_errors_show_in_the_page_and_the_server_goes_on(page):
    choose(page, "model", "base_model")
    send(page, "chat", QUESTION)
    wait_text(page, "#status", "error: the base model base_model has no chat template")
    assert page.input_value("#chat-message textarea") == QUESTION  # kept, to send again
    choose(page, "model", "alpaca")
    open_settings(page)
    fill(page, "#system textarea", "Be brief.")
    page.click("#chat-send")
    wait_text(page, "#status", "error: .*format 'alpaca'.*no system turn")
    fill(page, "#system textarea", "")
    page.click("#chat-send")
    wait_text(page, "#status", r"^alpaca: \d+ tokens")
    assert page.input_value("#chat-message textarea") == "" and answer(page, "chat-bot")


def test_a_corrected_answer_is_kept_and_preprocess_reads_it(page, site, tmp_path, capsys):
    choose(page, "model", "chat")
    send(page, "chat", QUESTION)
    wait_text(page, "#status", r"^chat: \d+ tokens")
    page.locator("#chat-bot button[aria-label=Edit]").last.click()
    page.fill("#chat-bot textarea.edit-textarea", CORRECTED)
    page.locator("#chat-bot button[aria-label=Submit]").click()
    wait_text(page, "#status", "edited")
    assert page.locator("#chat-bot [data-testid=bot] pre code").inner_text().strip() == "print('leaf is green')"
    _screenshot(page, DOCS / "web-chat.png" if os.environ.get("QLORAFX_UPDATE_DOCS") else tmp_path / "web-chat.png")
    page.click("#chat-keep")
    status = wait_text(page, "#status", "kept 1 exchange as line")
    kept = site[1]
    line = int(re.search(r"as line (\d+) of", status).group(1))
    record = json.loads(kept.read_text().splitlines()[line - 1])
    assert record == {"messages": [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": CORRECTED}],
                      "models": ["chat"], "edited": True}

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model:\n  loader: from_config\n  config: {model_type: llama}\n"
                      f"data:\n  datasets: [{{path: {kept}, format: chat, chat_template: chatml}}]\n"
                      f"  val_size: 0\n  cache_dir: {tmp_path / 'cache'}\n"
                      f"output_dir: {tmp_path / 'run'}\n")
    lines = len(kept.read_text().splitlines())
    assert main(["preprocess", str(recipe), "--json"]) == 0  # the CLI itself, in this process (torch is loaded)
    report = json.loads(capsys.readouterr().out)
    assert report["datasets"][0]["examples"] == lines and report["datasets"][0]["dropped"] == 0
    assert main(["preprocess", str(recipe), f"--show={lines}"]) == 0
    assert "print('leaf is green')" in capsys.readouterr().out


def _screenshot(tab, path: Path) -> None:
    """The page as the docs show it. It shows no model output (the answer is the hand-corrected one) and no
    timing; still, Chromium's pixels differ from run to run, so the docs' copy is rewritten only when asked
    (QLORAFX_UPDATE_DOCS=1): a test run leaves the checkout as it found it."""
    tab.evaluate("document.activeElement && document.activeElement.blur()")
    picture = tab.screenshot(animations="disabled", full_page=True)
    if not path.exists() or path.read_bytes() != picture:
        path.write_bytes(picture)
