"""supervisord's own safety net: a program that cannot start must not leave a container "up"
serving nothing. After `startretries` failed starts supervisor marks it FATAL and never retries;
the exit_on_fatal event listener (deploy/supervisor/) then stops supervisord, so compose's
restart policy starts the container afresh.
"""

import os
import signal
import socket
import subprocess

import pytest

from harness.stack import Stack


@pytest.mark.e2e
def test_supervisord_exits_when_a_program_goes_fatal(bake_once, binaries, tmp_path) -> None:
    """uWSGI cannot bind its port (another socket holds it): it goes FATAL, supervisord exits."""
    project = bake_once(process_manager="supervisor")
    stack = Stack(project, tmp_path, binaries)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        env = {**stack.env, "WSGI_PORT": str(squatter.getsockname()[1])}
        argv = stack.command("app", env)
        log_path = tmp_path / "supervisord.log"
        with log_path.open("wb") as log:
            supervisord = subprocess.Popen(  # noqa: S603 - the compose command of `app`
                argv,
                cwd=project,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                supervisord.wait(timeout=90)
            except subprocess.TimeoutExpired:
                tail = log_path.read_text(errors="replace")[-3000:]
                pytest.fail(f"supervisord still runs with uwsgi FATAL:\n{tail}")
            finally:
                if supervisord.poll() is None:
                    os.killpg(supervisord.pid, signal.SIGKILL)
                    supervisord.wait()
    log_text = log_path.read_text(errors="replace")
    assert "gave up: uwsgi entered FATAL state" in log_text, log_text[-3000:]
    assert "exit_on_fatal: " in log_text, log_text[-3000:]
    assert "stopping supervisord" in log_text, log_text[-3000:]
