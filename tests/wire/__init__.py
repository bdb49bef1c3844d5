"""Ring 1 and ring 2 of bootbus.wire: byte literals, then properties against jeepney.

Ring 1 tests write the expected bytes by hand from the specification's encoding
rules, so a change in bootbus's output is caught even when bootbus and the test
would agree with each other. Ring 2 (test_roundtrip_jeepney.py) compares with an
independent implementation that is used only here.
"""
