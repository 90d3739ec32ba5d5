"""Sign-on policies: ordered rules over device trust, certificates, users, groups, networks
and time; evaluation with every rule's verdict, shadowing analysis and replay of logged
requests against a draft."""
