"""Login refusals: one exception, a stable code and the French message shown
to the operator (the room server sends both in its ``ErrorBody``)."""

from __future__ import annotations

from sas_desk.models.errors import KnownError

__all__ = ["MESSAGES", "AuthError"]

#: code -> the French message the operator reads
MESSAGES: dict[str, str] = {
    "wrong_acr": (
        "Connexion refusée : le niveau d'authentification n'est pas suffisant "
        "(carte CPS ou application e-CPS exigée)."
    ),
    "expired": "Connexion refusée : le jeton d'identité a expiré. Reconnectez-vous.",
    "wrong_audience": "Connexion refusée : le jeton d'identité n'est pas destiné à ce service.",
    "wrong_issuer": "Connexion refusée : le jeton ne vient pas du fournisseur d'identité attendu.",
    "bad_token": "Connexion refusée : le jeton d'identité est invalide (signature ou format).",
    "nonce": "Connexion refusée : la réponse du fournisseur d'identité ne correspond pas à la demande.",
    "state": "Connexion refusée : la réponse du navigateur ne correspond pas à la demande en cours.",
    "unknown_subject": (
        "Connexion refusée : aucun compte de la salle ne correspond à cette identité "
        "(RPPS ou identifiant inconnu). Voyez l'administrateur."
    ),
    "account_disabled": "Connexion refusée : ce compte est désactivé. Voyez l'administrateur.",
    "role_forbidden": "Ce compte ne peut pas prendre ce rôle.",
    "denied": "Connexion refusée par l'utilisateur sur l'application e-CPS ou le fournisseur.",
    "flow_expired": "La demande de connexion a expiré. Recommencez.",
    "unknown_flow": "Demande de connexion inconnue ou déjà terminée. Recommencez.",
    "unknown_user": "Identifiant national inconnu de Pro Santé Connect.",
    "provider_unreachable": "Le fournisseur d'identité ne répond pas. Réessayez dans un instant.",
    "provider_error": "Le fournisseur d'identité a refusé la demande.",
    "not_configured": "Ce mode de connexion n'est pas configuré sur ce serveur.",
    "invalid": "Demande de connexion invalide.",
    "timeout": "Aucune réponse du navigateur : la connexion a été abandonnée.",
}


class AuthError(KnownError):
    """A refused or failed login; ``message_fr`` is shown as is."""

    def __init__(self, code: str, detail: str = "", *, message_fr: str = "") -> None:
        self.code = code
        super().__init__(message_fr or MESSAGES.get(code, MESSAGES["provider_error"]))
        # ``detail`` is for the log (never a token); the message is for the user
        self.args = (f"{code}: {detail}" if detail else code,)
        self.detail = detail
        self.provider = ""  # which provider refused, when known (audit)
