"""Login through OpenID Connect: Pro Santé Connect (authorization code + PKCE
with a loopback redirect, or CIBA) and the establishment's identity provider.

- :mod:`.provider`: discovery and the provider's endpoints;
- :mod:`.tokens`: ID token validation (joserfc);
- :mod:`.broker`: the room server's side (confidential client, BFF);
- :mod:`.login`: the workstation's side (loopback listener, system browser, CIBA);
- :mod:`.errors`: refusals with their French messages.
"""
