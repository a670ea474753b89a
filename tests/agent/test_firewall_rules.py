"""The firewall's rules, as built (argument lists, nothing run): both address families
drop traffic from VMs to the host and to private ranges and refuse outbound SMTP, unless the
provider allows SMTP; the SMTP refusal comes before anything that could let it through."""

import pytest

from kumulus.agent.firewall import CHAIN, CHAIN6_FORWARD, Rule, rules

SMTP = ("-i", "kmvm+", "-p", "tcp", "-m", "multiport", "--dports", "25,465,587",
        "-j", "REJECT", "--reject-with", "tcp-reset")  # fmt: skip


def _forward(family: int, built: list[Rule]) -> list[tuple[str, ...]]:
    if family == 4:
        # Inserted one by one at the top of DOCKER-USER: the chain ends up reversed.
        return [r.spec for r in reversed(built) if r.chain == "DOCKER-USER"]
    return [r.spec for r in built if r.chain == CHAIN6_FORWARD]


@pytest.mark.parametrize("family", [4, 6])
def test_smtp_is_refused_and_private_ranges_dropped(family: int) -> None:
    ns = "192.0.2.53" if family == 4 else "2001:db8::53"
    chains, built = rules(family, [ns], allow_smtp=False)
    forward = _forward(family, built)
    assert forward.count(SMTP) == 1
    smtp_at = forward.index(SMTP)
    # Only replies and DNS to the host's resolvers come before it; all drops after it.
    assert all("ESTABLISHED,RELATED" in spec or "53" in spec for spec in forward[:smtp_at]), forward
    drops = [spec[spec.index("-d") + 1] for spec in forward if spec[-1] == "DROP"]
    if family == 4:
        assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= set(drops)
    else:
        assert drops == ["fc00::/7", "fe80::/10"]
        assert Rule("FORWARD", ("-i", "kmvm+", "-j", CHAIN6_FORWARD), first=True) in built
    # Nothing from a VM reaches the host itself but replies.
    assert Rule("INPUT", ("-i", "kmvm+", "-j", CHAIN), first=True) in built
    assert [r.spec for r in built if r.chain == CHAIN][-1] == ("-j", "DROP")
    assert CHAIN in chains
    # Every element is one argv item: no spaces that a shell would have to split.
    assert all(" " not in arg for rule in built for arg in rule.spec)


@pytest.mark.parametrize("family", [4, 6])
def test_a_provider_can_allow_smtp(family: int) -> None:
    _, built = rules(family, [], allow_smtp=True)
    assert SMTP not in _forward(family, built)
    assert any(spec[-1] == "DROP" for spec in _forward(family, built))
