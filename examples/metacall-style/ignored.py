# Not listed in metacall.json, so not deployed.
def not_deployed():
    return 1
