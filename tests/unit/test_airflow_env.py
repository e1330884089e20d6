"""The Airflow environment the project's own commands run with: SQLite gets a longer busy
timeout, and any other database (or connect args the user set) is left alone."""

from __future__ import annotations

import importlib

from recomart.airflow_env import SQLITE_CONNECT_ARGS_ENV, airflow_env, sqlite_connect_args

KEY = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS"


def test_sqlite_gets_the_busy_timeout_and_the_path_resolves(tmp_path):
    assert sqlite_connect_args({"AIRFLOW_HOME": str(tmp_path)}) == SQLITE_CONNECT_ARGS_ENV
    assert sqlite_connect_args({"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "sqlite:////x.db"}) \
        == SQLITE_CONNECT_ARGS_ENV
    # what Airflow's conf.getimport does with the value: a dict with sqlite3's timeout
    module, _, attr = SQLITE_CONNECT_ARGS_ENV[KEY].rpartition(".")
    assert getattr(importlib.import_module(module), attr)["timeout"] > 5  # sqlite3's default: 5 s


def test_other_databases_and_the_users_connect_args_are_left_alone(tmp_path):
    pg = "postgresql+psycopg2://u@h/airflow"
    assert sqlite_connect_args({"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg}) == {}
    assert sqlite_connect_args({KEY: "mine.ARGS"}) == {}
    (tmp_path / "airflow.cfg").write_text(f"[database]\nsql_alchemy_conn = {pg}\n")
    assert sqlite_connect_args({"AIRFLOW_HOME": str(tmp_path)}) == {}
    (tmp_path / "airflow.cfg").write_text("[database]\nsql_alchemy_connect_args = mine.ARGS\n")
    assert sqlite_connect_args({"AIRFLOW_HOME": str(tmp_path)}) == {}


def test_the_project_env_carries_it(lake, monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", raising=False)
    monkeypatch.delenv(KEY, raising=False)
    assert airflow_env()[KEY] == SQLITE_CONNECT_ARGS_ENV[KEY]
    env = airflow_env({"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://u@h/a"})
    assert KEY not in env
