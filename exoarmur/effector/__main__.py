"""``python -m exoarmur.effector --port P --ledger L --seed S``."""

from exoarmur.effector.app import main

if __name__ == "__main__":
    main()
