import factory
from django.contrib.auth import get_user_model

from programs.actors import Actor
from programs.models import Membership, Organization

TEST_PASSWORD = "correct-horse-battery-staple"


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"org{n}")
    name = factory.LazyAttribute(lambda o: o.slug.title())


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    is_staff = True

    @factory.post_generation
    def password(obj, create, extracted, **kwargs):
        obj.set_password(extracted or TEST_PASSWORD)
        if create:
            obj.save()


class MembershipFactory(factory.django.DjangoModelFactory):
    """Goes through the membership service so groups and staff flags follow."""

    class Meta:
        model = Membership

    @classmethod
    def _create(cls, model_class, user, organization, role="coordinator", **kwargs):
        from programs.services import membership_grant

        return membership_grant(
            user=user, organization=organization, role=role, actor=Actor.system("test")
        )
