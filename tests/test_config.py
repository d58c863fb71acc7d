import base64
from pathlib import Path

import pytest

from newsletter_cli.config import DEFAULT_SENDGRID_HOST, find_config, load_config
from newsletter_cli.errors import ConfigError

from .conftest import MINIMAL_CONFIG, REPO


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "newsletter.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_minimal_config_gets_defaults(tmp_path):
    config = load_config(write(tmp_path, MINIMAL_CONFIG), environ={})
    assert config.name == "Test News"
    assert config.from_name == "Test News"
    assert config.language == "en"
    assert config.website == "https://testnews.ca/"
    assert config.unsubscribe_mode == "endpoint"
    assert config.sendgrid_host == DEFAULT_SENDGRID_HOST
    assert config.root == tmp_path.resolve()


def test_the_repository_config_is_valid_and_has_the_clinic_phones():
    config = load_config(REPO / "newsletter.toml", environ={})
    assert config.name == "MCSC"
    assert config.phones == (("Mississauga", "(905) 273-3045"), ("Toronto", "(416) 207-9090"))
    assert ".example" in config.from_email and ".example" in config.website


def test_environment_overrides_the_sendgrid_host(tmp_path):
    config = load_config(write(tmp_path, MINIMAL_CONFIG), environ={"SENDGRID_API_HOST": "http://127.0.0.1:9"})
    assert config.sendgrid_host == "http://127.0.0.1:9"


def test_every_problem_is_reported_at_once_with_its_line(tmp_path):
    text = (
        "[newsletter]\n"
        'name = "X"\n'
        'from_email = "not-an-email"\n'
        'webiste = "https://x.example"\n'
        "[unsubscribe]\n"
        'url = "http://x.example/u"\n'
    )
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text), environ={})
    message = error.value.message
    assert message.startswith("5 problems in ")
    assert (
        ":3: [newsletter] from_email: expected an email address like news@clinic.example, got 'not-an-email'" in message
    )
    assert ":4: [newsletter] webiste: unknown key (expected one of name, from_email," in message
    assert ":6: [unsubscribe] url: expected an https:// URL (RFC 8058); http is allowed only on localhost" in message
    assert "[newsletter] postal_address: required key is missing" in message
    assert "[newsletter] website: required key is missing" in message


def test_a_single_problem_is_one_line(tmp_path):
    path = write(tmp_path, MINIMAL_CONFIG + "[extra]\n")
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={})
    assert error.value.message == (
        f"{path}:9: unknown section [extra] (expected one of [newsletter], [unsubscribe], [sendgrid], "
        "[tracking], [consent], [archive], [signup], [store], [events])"
    )


def test_http_unsubscribe_is_allowed_on_localhost(tmp_path):
    text = MINIMAL_CONFIG.replace("https://testnews.ca/unsubscribe", "http://127.0.0.1:8080/unsubscribe")
    assert load_config(write(tmp_path, text), environ={}).unsubscribe_url == "http://127.0.0.1:8080/unsubscribe"


def test_sendgrid_mode_and_not_both_modes(tmp_path):
    sendgrid = MINIMAL_CONFIG.replace('url = "https://testnews.ca/unsubscribe"', "sendgrid_group_id = 42")
    assert load_config(write(tmp_path, sendgrid), environ={}).unsubscribe_mode == "sendgrid"
    with pytest.raises(ConfigError, match="set url or sendgrid_group_id, not both"):
        load_config(write(tmp_path, MINIMAL_CONFIG + "sendgrid_group_id = 42\n"), environ={})


def test_invalid_toml_names_the_line(tmp_path):
    path = write(tmp_path, '[newsletter]\nname = "unterminated\n')
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={})
    assert error.value.message.startswith(f"{path}:2: invalid TOML: ")


def test_the_config_is_found_in_a_parent_folder(tmp_path):
    path = write(tmp_path, MINIMAL_CONFIG)
    nested = tmp_path / "issues" / "drafts"
    nested.mkdir(parents=True)
    assert find_config(nested) == path.resolve()


def test_no_config_anywhere_says_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="run 'newsletter init'"):
        find_config(tmp_path)


def test_the_api_key_is_not_a_config_key(tmp_path):
    with pytest.raises(ConfigError, match=r"\[sendgrid\] api_key: unknown key"):
        load_config(write(tmp_path, MINIMAL_CONFIG + '[sendgrid]\napi_key = "SG.x"\n'), environ={})


def test_the_event_webhook_key_must_be_a_p256_key_and_the_environment_overrides_it(tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    def shown(curve: ec.EllipticCurve) -> str:  # as SendGrid's settings page shows a key
        key = ec.generate_private_key(curve).public_key()
        return base64.b64encode(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).decode()

    good, other = shown(ec.SECP256R1()), shown(ec.SECP256R1())
    path = write(tmp_path, MINIMAL_CONFIG + f'[events]\npublic_key = "{good}"\n')
    assert load_config(path, environ={}).events_public_key == good
    assert load_config(path, environ={"SENDGRID_WEBHOOK_PUBLIC_KEY": other}).events_public_key == other
    for bad, expected in [("not base64!", "as SendGrid shows it"), (shown(ec.SECP384R1()), "P-256")]:
        path.write_text(MINIMAL_CONFIG + f'[events]\npublic_key = "{bad}"\n')
        with pytest.raises(ConfigError, match=expected):
            load_config(path, environ={})
