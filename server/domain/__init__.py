"""Banyan's rules in pure code: who may do what, what each transition does,
which tasks a claim hands out, why a task is pending, and what every event
carries. No aiohttp, no SQL, no store, no event loop: functions take plain
typed values and return decisions or plans that a store applies.
"""
