"""Email authentication: SPF (RFC 7208), DKIM (RFC 6376), DMARC (RFC 7489) and the
Authentication-Results header (RFC 8601), evaluated against a world's DNS.

:func:`parse_authentication_results` reads an Authentication-Results value back, and
:func:`spf_terms` says what each term of an SPF record means, for a reader.

Every check asks DNS only through functions (``dns_txt``, ``dns_a``, ``dns_mx``,
``dns_aaaa``; see :mod:`.lookup`), so it is pure and a test backs it with a dict; the
running world passes its resolver through :func:`dns_functions`::

    verdict = evaluate(message, client_ip="127.0.0.9", helo="mallory.example",
                       mail_from="alice@example.com", **dns_functions(resolver))
    verdict.authentication_results("mail.anotherdomain.org")
    verdict.disposition            # "reject"
    for step in verdict.steps: print(step)

pyspf and dkimpy do the SPF and DKIM work; they are imported only when a check runs.
"""

from simsmtp.world.mailauth.dkim import (
    DEFAULT_HEADERS,
    MAX_SIGNATURES_TO_VERIFY,
    DKIMKey,
    DKIMResult,
    generate_key,
    parse_signature,
    sign,
    verify,
    verify_all,
)
from simsmtp.world.mailauth.dmarc import (
    DISPOSITIONS,
    DMARCRecord,
    DMARCResult,
    aligned,
    author_domains,
    check_dmarc,
    organizational_domain,
    parse_record,
)
from simsmtp.world.mailauth.lookup import (
    DNSFunctions,
    DNSTempError,
    dns_functions,
    no_addresses,
    txt_presentation,
)
from simsmtp.world.mailauth.results import (
    AuthenticationResults,
    AuthVerdict,
    ResultEntry,
    authentication_results,
    evaluate,
    parse_authentication_results,
    strip_authentication_results,
    temperror_verdict,
)
from simsmtp.world.mailauth.spf import SPF_RESULTS, SPFResult, SPFTerm, check_spf, spf_terms

__all__ = [
    "DEFAULT_HEADERS",
    "DISPOSITIONS",
    "MAX_SIGNATURES_TO_VERIFY",
    "SPF_RESULTS",
    "AuthVerdict",
    "AuthenticationResults",
    "DKIMKey",
    "DKIMResult",
    "DMARCRecord",
    "DMARCResult",
    "DNSFunctions",
    "DNSTempError",
    "ResultEntry",
    "SPFResult",
    "SPFTerm",
    "aligned",
    "authentication_results",
    "author_domains",
    "check_dmarc",
    "check_spf",
    "dns_functions",
    "evaluate",
    "generate_key",
    "no_addresses",
    "organizational_domain",
    "parse_authentication_results",
    "parse_record",
    "parse_signature",
    "sign",
    "spf_terms",
    "strip_authentication_results",
    "temperror_verdict",
    "txt_presentation",
    "verify",
    "verify_all",
]
