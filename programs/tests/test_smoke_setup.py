def test_demo_program_fixture_is_active(program):
    assert program.state == "active"
    assert program.latest_published_version().number == 1
