"""The web chat page (Gradio), mounted beside the OpenAI API on the same app and the same engine.

Only widgets and their wiring live here; what they do is ``webchat.WebChat``'s. Private by default:
the page is served by the app's own server (``qlorafx serve`` binds 127.0.0.1), there is no share
link (``launch`` is never called), Gradio's analytics and update check are off, the footer's links,
run history, monitoring and MCP server are off, and the theme's fonts ship with Gradio, so opening the
page contacts no other host. Gradio comes with the extra ``qlorafx[ui]``; only this module imports it.
"""

from __future__ import annotations

import hmac
import os
import re

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # read by gradio at import and by each component

import gradio as gr  # noqa: E402

from qlorafx.errors import UserError  # noqa: E402
from qlorafx.serve.webchat import Conversation, Options, WebChat  # noqa: E402

PATH = "/ui"
CSS = """
#status p { margin: 0; }
#status.error p, .status-error p { color: var(--error-text-color); }
"""


def _escape(text: str) -> str:
    """A status line shown as Markdown without its text turning into markup."""
    return re.sub(r"([\\`*_{}\[\]<>()#+!|~-])", r"\\\1", text)


def _status(text: str) -> str:
    return _escape(text)


def build_page(chat: WebChat, *, title: str = "qlorafx chat") -> gr.Blocks:
    names = chat.model_names()
    d = chat.defaults
    with gr.Blocks(title=title, analytics_enabled=False, fill_width=False) as page:
        gr.Markdown(f"### {_escape(title)}\nServing {', '.join(f'`{n}`' for n in names)}. "
                    f"Answers use each run's own format and template.")
        with gr.Accordion("Settings", open=False, elem_id="settings"):
            with gr.Row():
                temperature = gr.Slider(0, 2, value=d.temperature, step=0.05, label="Temperature (0 = greedy)",
                                        elem_id="temperature")
                top_p = gr.Slider(0.05, 1, value=d.top_p, step=0.05, label="Top-p", elem_id="top_p")
                max_new = gr.Slider(1, chat.context_length, value=min(d.max_new_tokens, chat.context_length), step=1,
                                    label="Max new tokens", elem_id="max_new_tokens")
            system = gr.Textbox(value=d.system, label="System message (for runs whose format has one)", lines=2,
                                elem_id="system")
            kept = f"Kept conversations go to `{chat.kept.path}`" if chat.kept else \
                "No --keep FILE was given: conversations cannot be kept."
            gr.Markdown(kept, elem_id="kept-file")
        controls = [temperature, top_p, max_new, system]

        with gr.Tab("Chat", elem_id="tab-chat"):
            model = gr.Dropdown(names, value=names[0], label="Model", elem_id="model")
            state = gr.State(Conversation())
            bot = _chatbot("chat", "Conversation")
            status = gr.Markdown(elem_id="status")
            message, send, stop, new, keep = _input_row("chat")

        with gr.Tab("Side by side", elem_id="tab-compare"):
            with gr.Row():
                with gr.Column():
                    left_model = gr.Dropdown(names, value=names[0], label="Left", elem_id="left-model")
                    left_state = gr.State(Conversation())
                    left_bot = _chatbot("left", "Left")
                with gr.Column():
                    right_model = gr.Dropdown(names, value=names[min(1, len(names) - 1)], label="Right",
                                              elem_id="right-model")
                    right_state = gr.State(Conversation())
                    right_bot = _chatbot("right", "Right")
            both_status = gr.Markdown(elem_id="both-status")
            both_message, both_send, both_stop, both_new, _ = _input_row("both", keep=False)
            with gr.Row():
                keep_left = gr.Button("Keep left as data", elem_id="keep-left", size="sm")
                keep_right = gr.Button("Keep right as data", elem_id="keep-right", size="sm")

        # -- one conversation ------------------------------------------------------------------

        async def answer(model_name, conversation, text, temperature, top_p, max_new, system,
                         request: gr.Request):
            options = Options(temperature, top_p, max_new, system or "")
            async for update in chat.reply(f"{request.session_hash}/chat", model_name, conversation, text, options):
                shown = update.conversation
                yield shown, shown.view(), "" if update.accepted else text, _status(update.status)

        for trigger in (send.click, message.submit):
            trigger(answer, [model, state, message, *controls], [state, bot, message, status],
                    concurrency_limit=None, show_progress="hidden")
        stop.click(_stopper(chat, "chat"), None, None, queue=False)
        new.click(lambda: (Conversation(), [], ""), None, [state, bot, status], queue=False)
        bot.edit(_edited, [state], [state, bot, status], queue=False)
        bot.clear(lambda: (Conversation(), ""), None, [state, status], queue=False)  # the chatbot's bin icon
        keep.click(lambda conversation: _status(_keep(chat, conversation)), [state], [status], queue=False)

        # -- side by side ----------------------------------------------------------------------

        async def answer_both(left_name, right_name, left, right, text, temperature, top_p, max_new, system,
                              request: gr.Request):
            options = Options(temperature, top_p, max_new, system or "")
            async for update in chat.reply_each(f"{request.session_hash}/both", [left_name, right_name],
                                                [left, right], text, options):
                a, b = update.conversations
                yield a, a.view(), b, b.view(), "" if update.accepted else text, _status(update.status)

        for trigger in (both_send.click, both_message.submit):
            trigger(answer_both, [left_model, right_model, left_state, right_state, both_message, *controls],
                    [left_state, left_bot, right_state, right_bot, both_message, both_status],
                    concurrency_limit=None, show_progress="hidden")
        both_stop.click(_stopper(chat, "both"), None, None, queue=False)
        both_new.click(lambda: (Conversation(), [], Conversation(), [], ""), None,
                       [left_state, left_bot, right_state, right_bot, both_status], queue=False)
        left_bot.edit(_edited, [left_state], [left_state, left_bot, both_status], queue=False)
        right_bot.edit(_edited, [right_state], [right_state, right_bot, both_status], queue=False)
        left_bot.clear(lambda: Conversation(), None, [left_state], queue=False)
        right_bot.clear(lambda: Conversation(), None, [right_state], queue=False)
        keep_left.click(lambda c: _status(_keep(chat, c)), [left_state], [both_status], queue=False)
        keep_right.click(lambda c: _status(_keep(chat, c)), [right_state], [both_status], queue=False)
        def current_models():
            served = chat.model_names()
            return [gr.Dropdown(choices=served)] * 3

        page.load(current_models, None, [model, left_model, right_model], queue=False)
    page.queue(default_concurrency_limit=None)
    return page


def _chatbot(name: str, label: str) -> gr.Chatbot:
    # editable="all": an answer can be corrected by hand before it is kept; copy buttons but no share
    # button (it would post to another host); Markdown and code blocks rendered, HTML sanitized
    return gr.Chatbot(label=label, elem_id=f"{name}-bot", editable="all", buttons=["copy", "copy_all"],
                      feedback_options=None, height=460, allow_tags=False, sanitize_html=True,
                      latex_delimiters=[], group_consecutive_messages=False)


def _input_row(name: str, keep: bool = True):
    with gr.Row():
        message = gr.Textbox(placeholder="Message (Enter sends, Shift+Enter: new line)", show_label=False,
                             lines=1, max_lines=8, scale=6, elem_id=f"{name}-message")
        send = gr.Button("Send", variant="primary", scale=1, elem_id=f"{name}-send")
        stop = gr.Button("Stop", variant="stop", scale=1, elem_id=f"{name}-stop")
    with gr.Row():
        new = gr.Button("New conversation", size="sm", elem_id=f"{name}-new")
        kept = gr.Button("Keep as data", size="sm", elem_id=f"{name}-keep") if keep else None
    return message, send, stop, new, kept


def _stopper(chat: WebChat, tab: str):
    def stop(request: gr.Request) -> None:
        chat.stop(f"{request.session_hash}/{tab}")  # the answer's own stream ends its update with "stopped"

    return stop


def _edited(conversation: Conversation, edit: gr.EditData):
    """A message corrected in the chatbot: the conversation takes the new text."""
    try:
        conversation = conversation.edit(edit.index, edit.value if isinstance(edit.value, str)
                                         else str(edit.value.get("content", "")))
        return conversation, conversation.view(), _status("edited: keep it as data to train on the correction")
    except UserError as err:
        return conversation, conversation.view(), _status(f"error: {err}")


def _keep(chat: WebChat, conversation: Conversation) -> str:
    try:
        return chat.keep(conversation)
    except UserError as err:
        return f"error: {err}"


def _key_login(api_key: str):
    def login(user: str, password: str) -> bool:
        return hmac.compare_digest(password.encode(), api_key.encode())

    return login


def mount_page(app, chat: WebChat, *, path: str = PATH, api_key: str | None = None, title: str = "qlorafx chat"):
    """The page at ``path`` on the FastAPI ``app`` (``/`` redirects to it). With an API key the page
    asks for it too (Gradio's login: any user name, the key as the password), so the page is no way
    around the key the API requires."""
    from fastapi.responses import RedirectResponse

    page = build_page(chat, title=title)
    auth = _key_login(api_key) if api_key is not None else None
    gr.mount_gradio_app(app, page, path=path, auth=auth, footer_links=[], run_history=False, show_error=True,
                        ssr_mode=False, enable_monitoring=False, pwa=False, mcp_server=False, css=CSS,
                        auth_message="This server was started with an API key: give any user name and the key "
                                     "as the password." if auth else None)
    app.add_api_route("/", lambda: RedirectResponse(f"{path}/"), include_in_schema=False)
    return app
