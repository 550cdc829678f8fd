"""Checks `purser serve`'s dashboard in a real headless Chromium (Debian's chromium and chromium-driver, driven by
Selenium): signs in with a key, watches a job submitted through the OpenAI SDK move to done, and checks that the
month's spend and cap shown equal what `purser report` says.

usage: dashboard_check.py BASE_URL ADMIN_KEY PURSER_EXECUTABLE DATABASE WORKDIR

Prints one "ok:" line per check; exits 1 at the first that fails.
"""
import json
import os
import subprocess
import sys
import time

import httpx2 as httpx
import openai
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

BASE, KEY, PURSER, DATABASE, WORK = sys.argv[1:6]
LINES = 60


def ok(what):
    print("ok:", what, flush=True)


def usd(text):
    """The page's own rounding (usd() in its script)."""
    value = float(text)
    if value == 0:
        return "$0.00"
    digits = 2 if abs(value) >= 1 else 4 if abs(value) >= 0.01 else 6
    return f"${value:.{digits}f}"


# A cap for the project, and a job through the SDK, long enough to watch.
budget = httpx.put(f"{BASE}/v1/purser/budgets", headers={"Authorization": f"Bearer {KEY}"}, json={"usd": "2.50"})
assert budget.status_code == 200, budget.text
path = os.path.join(WORK, "dashboard.jsonl")
with open(path, "w", encoding="utf-8") as file:
    for n in range(LINES):
        file.write(json.dumps({"custom_id": f"d-{n}", "method": "POST", "url": "/v1/chat/completions", "body": {
            "model": "gpt-5-mini", "max_tokens": 400, "messages": [{"role": "user", "content": f"Write a paragraph about topic {n}."}]}}) + "\n")
client = openai.OpenAI(base_url=BASE + "/v1", api_key=KEY)
batch = client.batches.create(input_file_id=client.files.create(file=open(path, "rb"), purpose="batch").id,
                              endpoint="/v1/chat/completions", completion_window="24h")
ok(f"batch {batch.id} created with {LINES} requests")

options = Options()
for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
    options.add_argument(flag)
# A phone's screen (headless Chromium's windows are at least 500px wide, so the device is emulated).
options.add_experimental_option("mobileEmulation", {"deviceMetrics": {"width": 390, "height": 844, "pixelRatio": 3}})
options.binary_location = "/usr/bin/chromium"
browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
try:
    browser.set_page_load_timeout(30)
    browser.get(BASE + "/")
    assert "sign in" in browser.title.lower(), browser.title
    field = browser.find_element(By.ID, "key")
    field.send_keys("pk_" + "0" * 48)
    field.send_keys(Keys.ENTER)
    WebDriverWait(browser, 10).until(lambda b: b.find_elements(By.CSS_SELECTOR, "[role=alert]"))
    ok("a wrong key is refused at the sign-in form")
    field = browser.find_element(By.ID, "key")
    field.send_keys(KEY)
    field.send_keys(Keys.ENTER)
    WebDriverWait(browser, 10).until(lambda b: b.find_elements(By.ID, "jobs"))
    cookie = browser.get_cookie("purser_session")
    assert cookie and cookie["httpOnly"] and cookie.get("sameSite") == "Strict", cookie
    assert KEY not in browser.page_source, "the key is in the page"
    ok("signed in: an HttpOnly, SameSite=Strict session cookie, and the key is nowhere in the page")

    def table(body):
        """The rows of a table body as text, read in one step (the page redraws its tables every poll)."""
        return browser.execute_script(
            "return [...document.querySelectorAll(arguments[0] + ' tr')].map(r => [...r.cells].map(c => c.textContent))", body)

    def job_row():
        return next((cells for cells in table("#jobs") if cells and batch.id in cells[0]), None)

    WebDriverWait(browser, 20).until(lambda b: job_row() is not None)
    seen = []
    deadline = time.time() + 120
    while time.time() < deadline:
        cells = job_row()
        done = int(cells[2].split("/")[0])
        if not seen or seen[-1] != done:
            seen.append(done)
        if done == LINES:
            break
        time.sleep(0.5)
    assert seen[-1] == LINES, f"the job's done count reached {seen[-1]} of {LINES}: {seen}"
    assert len(seen) >= 3, f"the progress should be seen moving, it showed only {seen}"
    ok(f"the job's progress moved on the page: {seen}")
    progress = browser.find_element(By.CSS_SELECTOR, "#jobs progress")
    assert progress.get_attribute("aria-label"), "the progress bar has a label"

    # Once the batch has ended its spend is final: the page must show what `purser report` says.
    while client.batches.retrieve(batch.id).status != "completed":
        time.sleep(0.3)
    time.sleep(2.5)  # one more poll of the page
    report = json.loads(subprocess.run([PURSER, "report", "--simulated", "--project", "alpha", "--json", "--db", DATABASE],
                                       check=True, capture_output=True, text=True).stdout)
    spent = browser.find_element(By.ID, "spent").text
    assert spent == usd(report["total"]["cost_usd"]), f"the page shows {spent}, purser report {report['total']['cost_usd']}"
    cap = report["budgets"][0]
    assert browser.find_element(By.ID, "cap").text == usd(cap["cap_usd"]), browser.find_element(By.ID, "cap").text
    left = browser.find_element(By.ID, "cap-left").text
    assert left.startswith(usd(cap["left_usd"])), f"the page shows {left}, purser report {cap['left_usd']} left"
    saved = browser.find_element(By.ID, "saved").text
    assert saved == usd(report["total"]["savings_usd"]), f"the page shows {saved} saved, purser report {report['total']['savings_usd']}"
    ok(f"the page's spend {spent}, cap {usd(cap['cap_usd'])}, {left} and saving {saved} equal purser report's")
    models = [cells[0] for cells in table("#by-model")]
    assert sorted(models) == sorted(line["model"] for line in report["lines"]), models
    ok(f"spend by model lists {models}")

    # Keyboard: the skip link is the first stop, and the sign-out button is reachable.
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("class") == "skip"
    ok("the first Tab lands on the skip link")
    width, screen = browser.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
    assert screen == 390 and width <= screen, f"the page is {width}px wide on a {screen}px phone screen"
    ok(f"the page fits a phone's width ({width}px of {screen}px; wide tables scroll inside their own box)")
    browser.find_element(By.CSS_SELECTOR, "form[action='/logout'] button").click()
    WebDriverWait(browser, 10).until(lambda b: b.find_elements(By.ID, "key"))
    ok("sign-out returns to the sign-in form")
finally:
    browser.quit()
print("all checks passed")
