"""Runs without Morel: `python3 -m unittest` in the project directory."""

import unittest

from hello import greet


class GreetTest(unittest.TestCase):
    def test_greets_by_name(self):
        self.assertEqual(greet("Ada"), {"message": "Hello, Ada!"})

    def test_greets_the_world_by_default(self):
        self.assertEqual(greet(), {"message": "Hello, world!"})


if __name__ == "__main__":
    unittest.main()
